/*
 * conn.h - what larder knows of each client connection, per worker: whether
 * a request is in flight (idle connections are the ones closed first, at the
 * connection limit and at shutdown), and, for HTTP/2, how fast it opens and
 * resets streams (h2o 2.2.5 has no Rapid Reset defence of its own).
 */
#ifndef LARDER_CONN_H
#define LARDER_CONN_H

#include <h2o.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "worker.h"

typedef struct conn conn_t;

/* Creates this worker's table; open counts the process's open connections (decremented as they close). */
conn_table_t *conn_table_create(worker_t *worker, _Atomic unsigned *open);
void conn_table_destroy(conn_table_t *table);
size_t conn_table_size(const conn_table_t *table);
/* The connections other than the drain's guests (see conn_register). */
size_t conn_table_members(const conn_table_t *table);

/*
 * Registers an accepted socket (sets its on_close). refused: the connection
 * is over max_client_connections; its requests get a 503 and it is closed.
 * guest: accepted during the drain (on an admin listener); it is closed
 * after its request, and the drain neither waits for it nor sweeps it as idle.
 */
void conn_register(conn_table_t *table, h2o_socket_t *sock, bool refused, bool guest);
/* Shuts down the connection idle (no request in flight) the longest; false when none is. */
bool conn_reclaim_idle(conn_table_t *table);
/*
 * Any thread: reserves one of this table's idle connections and asks its
 * worker to close it; false when none is left to reserve.
 */
bool conn_reserve_idle(conn_table_t *table);
/* Shutdown: closes connections with no request in flight now; with all set, every connection. */
void conn_close_idle(conn_table_t *table, bool all);

typedef enum {
    CONN_ADMIT,   /* go ahead */
    CONN_REFUSED, /* over the connection limit: answer 503 and close */
    CONN_ABUSIVE  /* HTTP/2 streams too fast: the connection is being closed; answer cheaply */
} conn_verdict_t;

/* Accounts a request as it enters the handler (it must be answered either way). */
conn_verdict_t conn_request_begin(h2o_req_t *req);

#endif
