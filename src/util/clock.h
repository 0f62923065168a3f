/* Monotonic wall-clock time for timings. */
#ifndef PCV_CLOCK_H
#define PCV_CLOCK_H

double pcv_now(void); /* seconds since an arbitrary fixed point (CLOCK_MONOTONIC) */

#endif
