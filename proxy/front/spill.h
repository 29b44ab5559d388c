/*
 * spill.h - where request bodies too large for memory wait (spill.c).
 */
#ifndef LARDER_SPILL_H
#define LARDER_SPILL_H

#include "conf.h"

/* Points h2o's body spill files at conf->spill_dir and clears what a crash left there; -1 (logged) if unusable. */
int spill_setup(const conf_t *conf);

#endif
