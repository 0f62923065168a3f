/* Tests: the model tolerance profiles of tests/tolerances.json (TOLERANCES.md) and the
 * elementwise comparison |got - want| <= atol + rtol |want| against them. Include after
 * testutil.h. */
#ifndef PCV_TU_TOLERANCE_H
#define PCV_TU_TOLERANCE_H

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>

typedef struct tol {
    double atol, rtol;
} tol;

static json_t *tu_tolerances;

/* loads tests/tolerances.json once; false (and a failed check) when it cannot be read */
static inline bool tu_tolerances_load(void)
{
    char path[4096];
    json_error_t je;
    snprintf(path, sizeof path, "%s/../tolerances.json", tu_fixtures());
    tu_tolerances = json_load_file(path, 0, &je);
    CHECK(tu_tolerances != NULL, "%s: %s", path, je.text);
    return tu_tolerances != NULL;
}

static inline void tu_tolerances_free(void)
{
    json_decref(tu_tolerances);
    tu_tolerances = NULL;
}

/* the profile models.<name> (a failed check and a zero tolerance when it is missing) */
static inline tol model_tol(const char *profile)
{
    json_t *p = json_object_get(json_object_get(tu_tolerances, "models"), profile);
    CHECK(p != NULL, "tolerances.json has no models.%s", profile);
    return (tol){json_number_value(json_object_get(p, "atol")), json_number_value(json_object_get(p, "rtol"))};
}

/* the number of elements outside the tolerance; prints the worst error as a share of it */
static inline long tol_compare(const char *what, const float *got, const float *want, int64_t n, tol t)
{
    long bad = 0;
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]), lim = t.atol + t.rtol * fabs((double)want[i]);
        bad += !(d <= lim);
        worst = d / lim > worst ? d / lim : worst;
    }
    printf("  %-48s n=%-8lld worst err/tol=%.3f%s\n", what, (long long)n, worst, bad ? "  FAIL" : "");
    return bad;
}

#endif
