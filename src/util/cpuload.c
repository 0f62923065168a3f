#include "util/cpuload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double pcv_cpu_pressure_parse(const char *text)
{
    if (!text)
        return -1;
    for (const char *line = text; *line;) {
        const char *eol = strchr(line, '\n');
        if (strncmp(line, "some ", 5) != 0) {
            if (!eol)
                break;
            line = eol + 1;
            continue;
        }
        const char *p = strstr(line, "avg10=");
        if (!p || (eol && p > eol))
            return -1;
        char *end;
        double v = strtod(p + 6, &end);
        if (end == p + 6 || v < 0 || v > 100 || v != v)
            return -1;
        return v;
    }
    return -1;
}

double pcv_cpu_pressure(void)
{
    const char *path = getenv("PCV_TEST_PSI");
    FILE *f = fopen(path && *path ? path : "/proc/pressure/cpu", "r");
    if (!f)
        return -1;
    char buf[512];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return pcv_cpu_pressure_parse(buf);
}
