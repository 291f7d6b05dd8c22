/* Identity of the host library (the CPU build used by CI). */
#include "specdeploy/specdeploy_c.h"
#include "specdeploy/status.h"

extern "C" {

SD_API const char* sd_build_info(void) { return "host"; }

SD_API sd_status sd_check_device(void) {
    sd::clear_error();
    return SD_OK;
}

}  // extern "C"
