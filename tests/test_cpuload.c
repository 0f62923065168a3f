/* The CPU pressure figure that chooses how OpenMP threads wait (src/cli/main.c): parsing of the
 * kernel's /proc/pressure/cpu text (the format of Documentation/accounting/psi.rst), and the
 * machine's own file where it has one. */
#include "testutil.h"
#include "util/cpuload.h"

#include <math.h>
#include <stdio.h>

static void near(double got, double want, const char *what)
{
    CHECK(fabs(got - want) < 1e-9, "%s: got %g, want %g", what, got, want);
}

int main(void)
{
    near(pcv_cpu_pressure_parse("some avg10=1.45 avg60=18.79 avg300=12.35 total=16960529465\n"
                                "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"),
         1.45, "a kernel's two lines");
    near(pcv_cpu_pressure_parse("some avg10=30.47 avg60=32.74 avg300=13.83 total=16960268990\n"), 30.47,
         "a busy machine");
    near(pcv_cpu_pressure_parse("full avg10=7.00 avg60=0 avg300=0 total=0\nsome avg10=2.50 avg60=0 avg300=0 total=1\n"),
         2.5, "the some line, not the full line, in any order");
    near(pcv_cpu_pressure_parse("some avg10=100.00 avg60=100.00 avg300=100.00 total=9"), 100, "no newline, 100%");
    near(pcv_cpu_pressure_parse(""), -1, "empty");
    near(pcv_cpu_pressure_parse(NULL), -1, "NULL");
    near(pcv_cpu_pressure_parse("some avg60=1.00 total=5\nfull avg10=2.00\n"), -1, "avg10 only on another line");
    near(pcv_cpu_pressure_parse("some avg10=abc\n"), -1, "not a number");
    near(pcv_cpu_pressure_parse("some avg10=-3\n"), -1, "negative");
    near(pcv_cpu_pressure_parse("some avg10=250\n"), -1, "over 100");
    near(pcv_cpu_pressure_parse("something avg10=5\n"), -1, "another key");
    double p = pcv_cpu_pressure();
    FILE *f = fopen("/proc/pressure/cpu", "r");
    if (f) {
        fclose(f);
        CHECK(p >= 0 && p <= 100, "this machine's /proc/pressure/cpu read as %g", p);
    } else {
        near(p, -1, "no /proc/pressure/cpu");
    }
    return TEST_DONE();
}
