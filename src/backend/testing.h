/* Test hooks of the backends: fault injection that production code never calls. Only the test
 * programs (tests/) include this header. */
#ifndef PCV_BACKEND_TESTING_H
#define PCV_BACKEND_TESTING_H

#include "backend/backend.h"

/* OpenCL: after `launches` more kernel launches, the next one fails as if the device were lost
 * (CL_OUT_OF_RESOURCES), and every later call on that device fails. Returns false when be is not
 * an OpenCL backend. */
bool pcv_backend_test_fail_after(pcv_backend *be, int64_t launches);

#endif
