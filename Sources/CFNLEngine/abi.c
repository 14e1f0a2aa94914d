/* CFNLEngine carries only the ABI header (include/fnl_engine.h); this file keeps the C
 * target non-empty for the package manager. */
#include "fnl_engine.h"
