/* Element types, spelled as in the safetensors header ("F32", "BF16", ...). */
#include "perceiver/perceiver.h"

#include <string.h>

typedef struct dtype_info {
    pcv_dtype dt;
    const char *name;
    size_t size;
} dtype_info;

static const dtype_info k_dtypes[] = {
    {PCV_DT_F32, "F32", 4},  {PCV_DT_F16, "F16", 2},  {PCV_DT_BF16, "BF16", 2},
    {PCV_DT_F64, "F64", 8},  {PCV_DT_I64, "I64", 8},  {PCV_DT_I32, "I32", 4},
    {PCV_DT_I16, "I16", 2},  {PCV_DT_I8, "I8", 1},    {PCV_DT_U64, "U64", 8},
    {PCV_DT_U32, "U32", 4},  {PCV_DT_U16, "U16", 2},  {PCV_DT_U8, "U8", 1},
    {PCV_DT_BOOL, "BOOL", 1},
};

#define N_DTYPES (sizeof k_dtypes / sizeof k_dtypes[0])

static const dtype_info *find_info(pcv_dtype dt)
{
    for (size_t i = 0; i < N_DTYPES; i++)
        if (k_dtypes[i].dt == dt)
            return &k_dtypes[i];
    return NULL;
}

const char *pcv_dtype_name(pcv_dtype dt)
{
    const dtype_info *info = find_info(dt);
    return info ? info->name : "INVALID";
}

pcv_dtype pcv_dtype_from_name(const char *s)
{
    if (!s)
        return PCV_DT_INVALID;
    for (size_t i = 0; i < N_DTYPES; i++)
        if (strcmp(k_dtypes[i].name, s) == 0)
            return k_dtypes[i].dt;
    return PCV_DT_INVALID;
}

size_t pcv_dtype_size(pcv_dtype dt)
{
    const dtype_info *info = find_info(dt);
    return info ? info->size : 0;
}
