/* How busy the machine's CPUs are with other work: the kernel's pressure stall information. */
#ifndef PCV_CPULOAD_H
#define PCV_CPULOAD_H

/* The "some avg10" figure of a /proc/pressure/cpu text: the share, in percent, of the last 10
 * seconds in which at least one runnable task waited for a CPU. -1 when the text has no such
 * line or number. */
double pcv_cpu_pressure_parse(const char *text);

/* The same, read from /proc/pressure/cpu (or from the file PCV_TEST_PSI names: tests); -1 where
 * the kernel has no pressure information. */
double pcv_cpu_pressure(void);

#endif
