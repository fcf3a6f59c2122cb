// brpc's error numbers (brpc/errno.proto), with brpc's values, so code that
// compares ErrorCode() or a stream's error against them keeps working.
// berror(code) from <butil/errno.h> gives their texts.

#ifndef BRPC_ERRNO_H
#define BRPC_ERRNO_H

#include <cerrno>

#include "butil/errno.h"

namespace brpc {

enum Errno {
    ENOSERVICE = 1001,
    ENOMETHOD = 1002,
    EREQUEST = 1003,
    ERPCAUTH = 1004,
    ETOOMANYFAILS = 1005,
    EPCHANFINISH = 1006,
    EBACKUPREQUEST = 1007,
    ERPCTIMEDOUT = 1008,
    EFAILEDSOCKET = 1009,
    EHTTP = 1010,
    EOVERCROWDED = 1011,
    ERTMPPUBLISHABLE = 1012,
    ERTMPCREATESTREAM = 1013,
    EEOF = 1014,
    EUNUSED = 1015,
    ESSL = 1016,
    EH2RUNOUTSTREAMS = 1017,
    EINTERNAL = 2001,
    ERESPONSE = 2002,
    ELOGOFF = 2003,
    ELIMIT = 2004,
    ECLOSE = 2005,
    EITP = 2006,
};

inline bool Errno_IsValid(int value) {
    return (value >= ENOSERVICE && value <= EH2RUNOUTSTREAMS) ||
           (value >= EINTERNAL && value <= EITP);
}

}  // namespace brpc

#endif  // BRPC_ERRNO_H
