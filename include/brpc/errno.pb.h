// brpc generates this header from errno.proto; programs include it by that
// name, so it forwards to <brpc/errno.h>.

#ifndef BRPC_ERRNO_PB_H
#define BRPC_ERRNO_PB_H

#include "brpc/errno.h"

#endif  // BRPC_ERRNO_PB_H
