/*
 * proxy.h - larder's HTTP front end: listeners, worker threads, routing and
 * the upstream client. proxy_run() is all that main() needs.
 */
#ifndef LARDER_PROXY_H
#define LARDER_PROXY_H

#include "conf.h"

/*
 * Binds every listener, starts conf->worker_threads event loops and serves
 * until SIGINT or SIGTERM. Returns the process exit status.
 */
int proxy_run(const conf_t *conf);

#endif
