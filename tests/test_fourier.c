/* Position features: pcv_linspace_torch and pcv_linspace_jax bit for bit against torch.linspace
 * and JAX's linspace (tests/fixtures/linspace_exact/reference.json, tools/linspace_reference.py),
 * for every linspace the supported architectures use and for random ones; and the Fourier grid
 * built from each profile's formula. */
#include "model/fourier.h"
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* every case of one section; returns the number of cases checked */
static int check_section(json_t *sec, const char *name, pcv_linspace_fn fn)
{
    json_t *cases = json_object_get(sec, "cases");
    CHECK(json_is_array(cases) && json_array_size(cases) > 20, "%s: no cases", name);
    size_t i;
    json_t *c;
    int checked = 0;
    json_array_foreach(cases, i, c) {
        float a = (float)json_number_value(json_object_get(c, "start"));
        float b = (float)json_number_value(json_object_get(c, "stop"));
        int64_t n = json_integer_value(json_object_get(c, "steps"));
        json_t *bits = json_object_get(c, "bits");
        if (n < 1 || !json_is_array(bits) || (int64_t)json_array_size(bits) != n) {
            CHECK(false, "%s case %zu: malformed", name, i);
            continue;
        }
        float *got = malloc((size_t)n * sizeof *got);
        fn(a, b, n, got);
        int64_t bad = 0, first = -1;
        for (int64_t k = 0; k < n; k++)
            if (to_bits(got[k]) != (uint32_t)json_integer_value(json_array_get(bits, (size_t)k)) && !bad++)
                first = k;
        CHECK(bad == 0, "%s linspace(%g, %g, %lld): %lld of %lld values differ, first [%lld] = %.9g, want %.9g", name,
              a, b, (long long)n, (long long)bad, (long long)n, (long long)first, first >= 0 ? got[first] : 0.0f,
              first >= 0 ? from_bits((uint32_t)json_integer_value(json_array_get(bits, (size_t)first))) : 0.0f);
        free(got);
        checked++;
    }
    return checked;
}

int main(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/linspace_exact/reference.json", tu_fixtures());
    json_error_t je;
    json_t *doc = json_load_file(path, 0, &je);
    CHECK(doc != NULL, "%s: %s", path, je.text);
    if (!doc)
        return TEST_DONE();
    int nt = check_section(json_object_get(doc, "torch"), "torch", pcv_linspace_torch);
    int nj = check_section(json_object_get(doc, "jax"), "jax", pcv_linspace_jax);
    printf("linspace: %d torch and %d JAX cases checked\n", nt, nj);

    /* the values the issue named: the 64 bands of the 224-pixel Fourier model (bands 38 and 40)
     * and the middle of linspace(-1, 1, 13) */
    float f[64], g[13];
    pcv_linspace_torch(1.0f, 112.0f, 64, f);
    pcv_linspace_torch(-1.0f, 1.0f, 13, g);
    CHECK(to_bits(f[38]) == 0x4287e79fu && to_bits(f[40]) == 0x428ef3cfu, "bands 38/40: %a %a", f[38], f[40]);
    CHECK(g[6] == -0x1p-25f, "linspace(-1, 1, 13)[6] = %a, torch gives -0x1p-25", g[6]);
    /* the two formulas are not the same function: the profiles must be distinguishable */
    float j[13];
    pcv_linspace_jax(-1.0f, 1.0f, 13, j);
    CHECK(j[6] == 0.0f && j[6] != g[6], "JAX's linspace(-1, 1, 13)[6] = %a", j[6]);

    /* the Fourier grid uses the linspace it is given: positions and frequencies */
    int64_t dims[2] = {13, 7}, res[2] = {224, 224};
    int64_t C = pcv_fourier_channels(2, 64, true, false);
    CHECK(C == 258, "channels %lld", (long long)C);
    float *ft = malloc((size_t)(13 * 7 * C) * sizeof(float)), *fj = malloc((size_t)(13 * 7 * C) * sizeof(float));
    pcv_fourier_grid(2, dims, res, 64, true, false, pcv_linspace_torch, ft);
    pcv_fourier_grid(2, dims, res, 64, true, false, pcv_linspace_jax, fj);
    /* row 6*7 (y = index 6 of 13) carries torch's -2^-25 as its position, JAX's 0 */
    CHECK(ft[(6 * 7) * C] == -0x1p-25f && fj[(6 * 7) * C] == 0.0f, "grid positions %a %a", ft[(6 * 7) * C],
          fj[(6 * 7) * C]);
    float want = sinf(3.14159265358979323846f * (-0x1p-25f * f[38]));
    CHECK(ft[(6 * 7) * C + 2 + 38] == want, "sin feature of band 38: %a want %a", ft[(6 * 7) * C + 2 + 38], want);
    free(ft);
    free(fj);
    json_decref(doc);
    return TEST_DONE();
}
