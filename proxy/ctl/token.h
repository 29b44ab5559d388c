/*
 * token.h - the bearer token larderctl sends: from --token, --token-file or
 * LARDER_TOKEN.
 */
#ifndef LARDERCTL_TOKEN_H
#define LARDERCTL_TOKEN_H

#include "larderctl.h"

/* Sets ctl->token from flag_token (--token), else the first line of token_file (--token-file), else LARDER_TOKEN;
 * NULL when none is given. CTL_OK, or CTL_USAGE with the error line written. Never prints the token. */
int token_resolve(ctl_t *ctl, const char *flag_token, const char *token_file);

/* Wipes and frees ctl->token. */
void token_dispose(ctl_t *ctl);

#endif
