#include "specdeploy/status.h"

#include <stdarg.h>
#include <stdio.h>

namespace sd {

namespace {
thread_local char g_error[1024] = {0};
}

sd_status fail(sd_status st, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_error, sizeof(g_error), fmt, ap);
    va_end(ap);
    return st;
}

void clear_error() { g_error[0] = 0; }

const char* last_error() { return g_error; }

}  // namespace sd
