/* cryomamba/cryomamba.h: the one door to libcryomamba. Everything public
 * lives in cryomamba/client.h; include either. */
#ifndef CRYOMAMBA_CRYOMAMBA_H
#define CRYOMAMBA_CRYOMAMBA_H

#include "cryomamba/client.h"

#endif
