/*
 * ferry_err: the one error enum of the project.
 *
 * 0 is success. Each error has a stable wire code (the string that travels in
 * Error.code and that operators grep for) and a short description. errno,
 * zmq_errno() and protobuf unpack failures are turned into these at the
 * boundary where they happen. The list itself is public, in
 * include/ferry/value.h, beside the values the client and worker APIs share.
 */
#ifndef FERRY_ERR_H
#define FERRY_ERR_H

#include "ferry/value.h"

#endif
