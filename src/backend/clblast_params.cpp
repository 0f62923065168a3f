// CLBlast's current tuning parameters of one device and kernel (clblast::RetrieveParameters, which
// CLBlast's C API lacks), for the C code of the OpenCL backend (opencl.c): the only C++ in
// perceiver-cl, a shim around CLBlast's own C++ API.
#include <clblast.h>

#include <string>
#include <unordered_map>

extern "C" int pcv_clblast_retrieve(cl_device_id device, const char *kernel, int n, const char *const *names,
                                    size_t *values)
{
    try {
        std::unordered_map<std::string, size_t> params;
        if (clblast::RetrieveParameters(device, kernel, clblast::Precision::kSingle, params) !=
            clblast::StatusCode::kSuccess)
            return -1;
        for (int i = 0; i < n; i++) {
            auto it = params.find(names[i]);
            if (it == params.end())
                return -1;
            values[i] = it->second;
        }
        return 0;
    } catch (...) {
        return -1;
    }
}
