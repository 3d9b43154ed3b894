/* ferry_err: names and descriptions for the project's error enum. */
#include "ferry_err.h"

#include <string.h>

static const char *const codes[] = {
#define FERRY_ERR_CODE(e, code, desc) [e] = code,
    FERRY_ERR_LIST(FERRY_ERR_CODE)
#undef FERRY_ERR_CODE
};

static const char *const descs[] = {
#define FERRY_ERR_DESC(e, code, desc) [e] = desc,
    FERRY_ERR_LIST(FERRY_ERR_DESC)
#undef FERRY_ERR_DESC
};

const char *ferry_err_code(ferry_err err)
{
    if ((unsigned)err >= FERRY_ERR_COUNT)
        return "unknown";
    return codes[err];
}

const char *ferry_err_desc(ferry_err err)
{
    if ((unsigned)err >= FERRY_ERR_COUNT)
        return "unknown error";
    return descs[err];
}

ferry_err ferry_err_from_code(const char *code)
{
    for (int i = 0; i < FERRY_ERR_COUNT; i++)
        if (strcmp(codes[i], code) == 0)
            return (ferry_err)i;
    return FERRY_EPROTO;
}
