/*
 * upload_entry.c - the entry a write makes.
 *
 * A read records, per API, the headers of the media response it got, and
 * replays them on hits. A write gets no media response, so its views are
 * made from what the write's answer and request report, in the shape GCS
 * media responses take (x-goog-generation, x-goog-metageneration,
 * x-goog-hash, x-goog-stored-content-*, x-goog-storage-class; see
 * gcs-semantics). What neither tells is left out rather than guessed:
 *
 *   - the XML view's ETag is the quoted MD5 only where GCS documents it so
 *     (an object with an MD5 that is not composite), or the ETag an XML
 *     write was answered with; without either there is no XML view, and the
 *     first XML read fills it;
 *   - the JSON view's ETag is the resource's etag; an XML write reports
 *     none, so it is made the way GCS makes resource etags (base64 of a
 *     protobuf of generation and metageneration, as every observed one
 *     decodes); a revalidation's 304 replaces it if upstream's differs;
 *   - Last-Modified needs the resource's "updated"; x-goog-storage-class its
 *     storageClass.
 *
 * The JSON resource is recorded (so metadata GETs hit) only when upstream
 * answered with all of it: a fields= selection gives part of one. A later
 * 304 replaces whatever headers it carries, as for any entry.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "entry.h"
#include "fetch.h"
#include "upload_entry.h"

/* What GCS sends when an object sets no Cache-Control and is not public (emulated upstream agrees). */
#define PRIVATE_CACHE_CONTROL_JSON "no-cache, no-store, max-age=0, must-revalidate"
#define PRIVATE_CACHE_CONTROL_XML "private, max-age=0"

void upload_facts_init(upload_facts_t *facts, const char *bucket, const char *name, const char *owner)
{
    *facts = (upload_facts_t){.bucket = bucket, .name = name, .generation = -1, .metageneration = -1, .size = -1,
                              .component_count = -1, .owner = owner};
}

static void take_string(const char **field, json_t *object, const char *key)
{
    const char *v = json_string_value(json_object_get(object, key));
    if (v != NULL)
        *field = v;
}

static void take_int64(int64_t *field, json_t *object, const char *key)
{
    json_t *v = json_object_get(object, key);
    if (json_is_integer(v))
        *field = (int64_t)json_integer_value(v);
    else if (v != NULL && entry_json_int64(object, key) >= 0)
        *field = entry_json_int64(object, key);
}

void upload_facts_from_request_metadata(upload_facts_t *facts, json_t *metadata)
{
    take_string(&facts->content_type, metadata, "contentType");
    take_string(&facts->content_encoding, metadata, "contentEncoding");
    take_string(&facts->cache_control, metadata, "cacheControl");
    take_string(&facts->content_disposition, metadata, "contentDisposition");
    take_string(&facts->content_language, metadata, "contentLanguage");
    take_string(&facts->storage_class, metadata, "storageClass");
    if (json_is_object(json_object_get(metadata, "metadata")))
        facts->metadata = json_object_get(metadata, "metadata");
}

void upload_facts_from_resource(upload_facts_t *facts, json_t *resource)
{
    upload_facts_from_request_metadata(facts, resource);
    take_string(&facts->bucket, resource, "bucket");
    take_string(&facts->name, resource, "name");
    take_int64(&facts->generation, resource, "generation");
    take_int64(&facts->metageneration, resource, "metageneration");
    take_int64(&facts->size, resource, "size");
    take_int64(&facts->component_count, resource, "componentCount");
    take_string(&facts->updated, resource, "updated");
    take_string(&facts->crc32c, resource, "crc32c");
    take_string(&facts->md5, resource, "md5Hash");
    take_string(&facts->json_etag, resource, "etag");
}

static const char *header_value(h2o_mem_pool_t *pool, const h2o_headers_t *headers, const char *name)
{
    ssize_t i = h2o_find_header_by_str(headers, name, strlen(name), -1);
    if (i == -1)
        return NULL;
    return h2o_strdup(pool, headers->entries[i].value.base, headers->entries[i].value.len).base;
}

static void dispose_json(void *p)
{
    json_decref(*(json_t **)p);
}

void upload_facts_from_xml_request(upload_facts_t *facts, h2o_mem_pool_t *pool, const h2o_headers_t *headers)
{
    static const struct {
        const char *header;
        size_t field;
    } fields[] = {{"content-type", offsetof(upload_facts_t, content_type)},
                  {"content-encoding", offsetof(upload_facts_t, content_encoding)},
                  {"cache-control", offsetof(upload_facts_t, cache_control)},
                  {"content-disposition", offsetof(upload_facts_t, content_disposition)},
                  {"content-language", offsetof(upload_facts_t, content_language)},
                  {"x-goog-storage-class", offsetof(upload_facts_t, storage_class)}};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        const char *v = header_value(pool, headers, fields[i].header);
        if (v != NULL)
            *(const char **)((char *)facts + fields[i].field) = v;
    }
    /* Custom metadata: x-goog-meta-K (or S3's x-amz-meta-K) becomes K, as GCS stores it. */
    json_t *metadata = NULL;
    for (size_t i = 0; i != headers->size; i++) {
        const h2o_iovec_t *name = headers->entries[i].name;
        size_t prefix = 0;
        if (name->len > 12 && strncasecmp(name->base, "x-goog-meta-", 12) == 0)
            prefix = 12;
        else if (name->len > 11 && strncasecmp(name->base, "x-amz-meta-", 11) == 0)
            prefix = 11;
        if (prefix == 0)
            continue;
        if (metadata == NULL && (metadata = json_object()) == NULL)
            return;
        char *key = h2o_strdup(pool, name->base + prefix, name->len - prefix).base;
        json_object_set_new(metadata, key,
                            json_stringn(headers->entries[i].value.base, headers->entries[i].value.len));
    }
    if (metadata != NULL) {
        /* Borrowed like every other fact: the pool owns it from here. */
        json_t **owned = h2o_mem_alloc_shared(pool, sizeof(*owned), dispose_json);
        *owned = metadata;
        facts->metadata = metadata;
    }
}

static int64_t header_int64(h2o_mem_pool_t *pool, const h2o_headers_t *headers, const char *name)
{
    const char *v = header_value(pool, headers, name);
    int64_t n;
    return v != NULL && target_parse_int64(v, strlen(v), &n) ? n : -1;
}

void upload_facts_from_xml_answer(upload_facts_t *facts, h2o_mem_pool_t *pool, const h2o_headers_t *headers)
{
    facts->generation = header_int64(pool, headers, "x-goog-generation");
    int64_t metageneration = header_int64(pool, headers, "x-goog-metageneration");
    if (metageneration >= 0)
        facts->metageneration = metageneration;
    int64_t stored = header_int64(pool, headers, "x-goog-stored-content-length");
    if (stored >= 0)
        facts->size = stored;
    const char *etag = header_value(pool, headers, "etag");
    if (etag != NULL)
        facts->xml_etag = etag;
    /* x-goog-hash may come once with both values or once per value. */
    for (ssize_t i = -1; (i = h2o_find_header_by_str(headers, H2O_STRLIT("x-goog-hash"), i)) != -1;) {
        char *hash = h2o_strdup(pool, headers->entries[i].value.base, headers->entries[i].value.len).base, *save = NULL;
        for (char *item = strtok_r(hash, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
            while (*item == ' ')
                item++;
            if (strncmp(item, "crc32c=", 7) == 0)
                facts->crc32c = item + 7;
            else if (strncmp(item, "md5=", 4) == 0)
                facts->md5 = item + 4;
        }
    }
}

/* --- the views --- */

static bool add_header(json_t *list, const char *name, const char *value)
{
    return value == NULL || json_array_append_new(list, json_pack("[ss]", name, value)) == 0;
}

/* The quoted hex MD5, the XML API's ETag for an object with an MD5 that is not composite; NULL otherwise. */
static char *md5_etag(const upload_facts_t *f, char *buf, size_t cap)
{
    unsigned char raw[20];
    if (f->md5 == NULL || f->component_count >= 0 || strlen(f->md5) != 24 || cap < 35 ||
        EVP_DecodeBlock(raw, (const unsigned char *)f->md5, 24) != 18)
        return NULL;
    buf[0] = '"';
    for (int i = 0; i < 16; i++)
        snprintf(buf + 1 + 2 * i, 3, "%02x", raw[i]);
    buf[33] = '"';
    buf[34] = '\0';
    return buf;
}

static size_t put_varint(unsigned char *out, uint64_t v)
{
    size_t n = 0;
    do {
        out[n++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v != 0);
    return n;
}

/* The JSON API's etag of a generation and metageneration (fields 1 and 2 of a protobuf, base64). */
static char *derived_json_etag(const upload_facts_t *f, char *buf, size_t cap)
{
    unsigned char raw[24];
    size_t n = 0;
    raw[n++] = 0x08;
    n += put_varint(raw + n, (uint64_t)f->generation);
    raw[n++] = 0x10;
    n += put_varint(raw + n, (uint64_t)(f->metageneration >= 0 ? f->metageneration : 1));
    if (cap < 4 * ((n + 2) / 3) + 1)
        return NULL;
    EVP_EncodeBlock((unsigned char *)buf, raw, (int)n);
    return buf;
}

/* The headers of flavour's media response for the object, as upstream would send them to its uploader. */
static json_t *view_headers(const upload_facts_t *f, cache_flavour_t flavour, const char *etag,
                            const char *last_modified)
{
    json_t *list = json_array();
    char generation[24], metageneration[24], size[24], components[24], hash[96];
    snprintf(generation, sizeof(generation), "%lld", (long long)f->generation);
    snprintf(metageneration, sizeof(metageneration), "%lld", (long long)(f->metageneration >= 0 ? f->metageneration : 1));
    snprintf(size, sizeof(size), "%lld", (long long)f->size);
    snprintf(components, sizeof(components), "%lld", (long long)f->component_count);
    snprintf(hash, sizeof(hash), "%s%s%s%s%s", f->crc32c != NULL ? "crc32c=" : "", f->crc32c != NULL ? f->crc32c : "",
             f->crc32c != NULL && f->md5 != NULL ? "," : "", f->md5 != NULL ? "md5=" : "", f->md5 != NULL ? f->md5 : "");
    const char *cache_control = f->cache_control != NULL ? f->cache_control
                                : flavour == CACHE_FLAVOUR_JSON ? PRIVATE_CACHE_CONTROL_JSON
                                                                : PRIVATE_CACHE_CONTROL_XML;
    bool ok = list != NULL &&
              add_header(list, "content-type", f->content_type != NULL ? f->content_type : "application/octet-stream") &&
              add_header(list, "content-encoding", f->content_encoding) && add_header(list, "etag", etag) &&
              add_header(list, "last-modified", last_modified) && add_header(list, "x-goog-generation", generation) &&
              add_header(list, "x-goog-metageneration", metageneration) &&
              add_header(list, "x-goog-stored-content-encoding",
                         f->content_encoding != NULL ? f->content_encoding : "identity") &&
              add_header(list, "x-goog-stored-content-length", size) && add_header(list, "x-goog-hash", hash) &&
              add_header(list, "x-goog-storage-class", f->storage_class) &&
              add_header(list, "x-goog-component-count", f->component_count >= 0 ? components : NULL) &&
              add_header(list, "accept-ranges", "bytes") && add_header(list, "cache-control", cache_control) &&
              add_header(list, "content-disposition", f->content_disposition) &&
              add_header(list, "content-language", f->content_language);
    const char *key;
    json_t *value;
    if (flavour == CACHE_FLAVOUR_XML && json_is_object(f->metadata))
        json_object_foreach(f->metadata, key, value)
        {
            char name[300];
            snprintf(name, sizeof(name), "x-goog-meta-%s", key);
            ok = ok && add_header(list, name, json_string_value(value));
        }
    if (!ok) {
        json_decref(list);
        return NULL;
    }
    return list;
}

/* The record text: both views (the XML one when its ETag is known) and, when whole, the resource. */
static char *make_record(const upload_facts_t *f, const char *last_modified)
{
    char md5_tag[40];
    const char *xml_etag = f->xml_etag != NULL ? f->xml_etag : md5_etag(f, md5_tag, sizeof(md5_tag));
    char derived[48];
    const char *json_etag = f->json_etag != NULL ? f->json_etag : derived_json_etag(f, derived, sizeof(derived));
    json_t *json_view = view_headers(f, CACHE_FLAVOUR_JSON, json_etag, last_modified);
    json_t *xml_view = xml_etag != NULL ? view_headers(f, CACHE_FLAVOUR_XML, xml_etag, last_modified) : NULL;
    static const h2o_headers_t no_headers = {0};
    json_t *resource_headers =
        f->resource != NULL ? cache_capture_headers(f->resource_headers != NULL ? f->resource_headers : &no_headers)
                            : NULL;
    char *record = NULL;
    if (json_view != NULL && (xml_etag == NULL || xml_view != NULL) &&
        (f->resource == NULL || resource_headers != NULL)) {
        char *json_only = cache_record_merge(NULL, CACHE_FLAVOUR_JSON, true, json_etag, json_view,
                                             resource_headers != NULL ? f->resource : NULL, resource_headers);
        record = xml_view != NULL && json_only != NULL
                     ? cache_record_merge(json_only, CACHE_FLAVOUR_XML, true, xml_etag, xml_view, NULL, NULL)
                     : json_only;
        if (record != json_only)
            free(json_only);
    }
    json_decref(json_view);
    json_decref(xml_view);
    json_decref(resource_headers);
    if (record != NULL && f->resource != NULL && entry_acl_grants_all_users(f->resource)) {
        char *marked = cache_record_with_public(record);
        free(record);
        record = marked;
    }
    return record;
}

static char *dup_or_null(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

const char *upload_entry_make(cache_t *cache, const upload_facts_t *f, store_meta_t *meta)
{
    memset(meta, 0, sizeof(*meta));
    if (f->bucket == NULL || f->name == NULL || f->generation <= 0 || f->size < 0)
        return "the answer does not say which generation it made";
    if (f->crc32c == NULL && f->md5 == NULL)
        return "the answer has no crc32c or md5 to check the bytes with";
    if ((uint64_t)f->size > cache->conf->cache.max_object_size)
        return "larger than cache.max_object_size";
    char date[64];
    const char *last_modified = entry_http_date_of_rfc3339(f->updated, date, sizeof(date));
    meta->bucket = strdup(f->bucket);
    meta->name = strdup(f->name);
    meta->generation = f->generation;
    meta->metageneration = f->metageneration >= 0 ? f->metageneration : 1;
    meta->size = (uint64_t)f->size;
    meta->etag = dup_or_null(f->json_etag != NULL ? f->json_etag : f->xml_etag);
    meta->content_type = strdup(f->content_type != NULL ? f->content_type : "application/octet-stream");
    meta->content_encoding = dup_or_null(f->content_encoding);
    meta->cache_control = dup_or_null(f->cache_control);
    meta->content_disposition = dup_or_null(f->content_disposition);
    meta->content_language = dup_or_null(f->content_language);
    meta->last_modified = dup_or_null(last_modified);
    meta->crc32c = dup_or_null(f->crc32c);
    meta->md5 = dup_or_null(f->md5);
    meta->owner = strdup(f->owner);
    meta->fill_time = worker_unix_ms();
    meta->resource_json = make_record(f, last_modified);
    if (meta->bucket == NULL || meta->name == NULL || meta->content_type == NULL ||
        (f->crc32c != NULL && meta->crc32c == NULL) || meta->owner == NULL || meta->resource_json == NULL) {
        store_meta_free(meta);
        return "out of memory";
    }
    return NULL;
}

bool upload_entry_is_cached(cache_t *cache, const char *bucket, const char *name, int64_t generation,
                            store_key_t *made)
{
    store_meta_t stored;
    store_key_make(made, bucket, strlen(bucket), name, strlen(name));
    bool cached = false;
    if (generation > 0 && store_meta_get(cache->store, made, &stored) == STORE_OK) {
        cached = stored.generation == generation;
        store_meta_free(&stored);
    }
    fetch_t *filling = generation > 0 && !cached ? fetch_registry_newest(cache, made) : NULL;
    if (filling != NULL && fetch_meta(filling, &stored)) {
        cached = stored.generation == generation;
        store_meta_free(&stored);
    }
    fetch_release(filling);
    return cached;
}
