/* Thread-local last error behind sd_last_error(); host C++ only (launchers, never device code). */
#ifndef SPECDEPLOY_STATUS_H
#define SPECDEPLOY_STATUS_H

#include "specdeploy/specdeploy_c.h"

namespace sd {

/* Records a printf-style message for this thread and returns `st`. */
sd_status fail(sd_status st, const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Clears this thread's message (every C ABI entry point does this first). */
void clear_error();

const char* last_error();

}  // namespace sd

#endif /* SPECDEPLOY_STATUS_H */
