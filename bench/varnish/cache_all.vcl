vcl 4.1;
# Varnish as a caching proxy in front of the GCS emulator: the second peer
# larder is compared with (bench/hits.py's "varnish"). It caches what
# bench/nginx/proxy_cache.conf caches, for as long:
#   - GET and HEAD, keyed on the URL and the Authorization header (nginx:
#     $request_method$request_uri$http_authorization; Varnish turns a HEAD
#     miss into a GET upstream, as nginx's proxy_cache_convert_head does);
#   - 200 and 206 answers for 1 h, whatever their Cache-Control, Expires,
#     Set-Cookie or Vary say (nginx: proxy_ignore_headers ...), even though
#     the request carries Authorization or a Cookie; no grace, no keep
#     (nginx serves nothing stale unless told to);
#   - other answers are not stored (nginx: proxy_cache_valid 200 206 only);
#   - concurrent misses for one key wait for the first fetch (Varnish's
#     waiting list; nginx: proxy_cache_lock on).
# bench/hits.py fills in @UPSTREAM_PORT@ and runs varnishd with malloc storage.

backend emulator {
    .host = "127.0.0.1";
    .port = "@UPSTREAM_PORT@";
    .connect_timeout = 5s;
    .first_byte_timeout = 60s;
    .between_bytes_timeout = 60s;
}

sub vcl_recv {
    if (req.method != "GET" && req.method != "HEAD") {
        return (pass);
    }
    # Skips the built-in vcl_recv, which passes any request with
    # Authorization or Cookie.
    return (hash);
}

sub vcl_hash {
    hash_data(req.url);
    hash_data(req.http.Authorization);
    # Skips the built-in vcl_hash, which adds the Host header.
    return (lookup);
}

sub vcl_backend_fetch {
    set bereq.http.Host = "127.0.0.1:@UPSTREAM_PORT@";
}

sub vcl_backend_response {
    if (beresp.status == 200 || beresp.status == 206) {
        set beresp.ttl = 1h;
        set beresp.grace = 0s;
        set beresp.keep = 0s;
        # Vary would split the entry by request headers; nginx ignores it.
        unset beresp.http.Vary;
        # Skips the built-in vcl_backend_response, which stores nothing with
        # Set-Cookie, Cache-Control private/no-cache/no-store or a zero TTL.
        return (deliver);
    }
    set beresp.uncacheable = true;
    set beresp.ttl = 0s;
    return (deliver);
}

sub vcl_deliver {
    # The same header as nginx's $upstream_cache_status, for the warm-up check.
    if (obj.hits > 0) {
        set resp.http.X-Cache-Status = "HIT";
    } else {
        set resp.http.X-Cache-Status = "MISS";
    }
}
