/*
 * conditional.c - a client's preconditions and If-Range, answered from an
 * entry the way GCS answers them: RFC 9110's order (13.2.2), then GCS's
 * generation parameters, with either API's form of the ETag accepted.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "conditional.h"
#include "state.h"

/* The object's ETags: GCS accepts either API's form in a condition on either API. */
typedef struct etag_set {
    const char *tags[4];
    size_t count;
    char md5_tag[40]; /* the XML form, "<md5 hex>", derived from the stored md5 */
} etag_set_t;

static void etag_set_add(etag_set_t *set, const char *tag)
{
    if (tag != NULL && set->count < sizeof(set->tags) / sizeof(set->tags[0]))
        set->tags[set->count++] = tag;
}

static void etag_set_init(etag_set_t *set, const store_meta_t *meta, const record_t *record)
{
    memset(set, 0, sizeof(*set));
    etag_set_add(set, record->media[CACHE_FLAVOUR_JSON].etag);
    etag_set_add(set, record->media[CACHE_FLAVOUR_XML].etag);
    etag_set_add(set, record->resource.etag);
    unsigned char md5[32];
    if (meta->md5 != NULL && strlen(meta->md5) == 24 &&
        EVP_DecodeBlock(md5, (const unsigned char *)meta->md5, 24) >= 16) {
        size_t n = 0;
        set->md5_tag[n++] = '"';
        for (int i = 0; i < 16; i++)
            n += (size_t)snprintf(set->md5_tag + n, sizeof(set->md5_tag) - n, "%02x", md5[i]);
        set->md5_tag[n++] = '"';
        set->md5_tag[n] = '\0';
        etag_set_add(set, set->md5_tag);
    }
}

/* Whether one list item names etag; weak comparison unless strong (then W/ on either side never matches). */
static bool item_matches(const char *item, size_t item_len, const char *etag, bool strong)
{
    size_t etag_len = strlen(etag);
    bool weak_item = item_len >= 2 && item[0] == 'W' && item[1] == '/';
    bool weak_tag = etag_len >= 2 && etag[0] == 'W' && etag[1] == '/';
    if (strong && (weak_item || weak_tag))
        return false;
    if (weak_item)
        item += 2, item_len -= 2;
    if (weak_tag)
        etag += 2, etag_len -= 2;
    if (item_len == etag_len && memcmp(item, etag, etag_len) == 0)
        return true;
    /* JSON-API ETags go out unquoted; clients may quote them back. */
    return item_len == etag_len + 2 && item[0] == '"' && item[item_len - 1] == '"' &&
           memcmp(item + 1, etag, etag_len) == 0;
}

static bool list_matches(h2o_iovec_t list, const etag_set_t *set, bool strong, bool star)
{
    const char *p = list.base, *end = list.base + list.len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == ','))
            p++;
        const char *item = p;
        while (p < end && *p != ',')
            p++;
        const char *item_end = p;
        while (item_end > item && item_end[-1] == ' ')
            item_end--;
        size_t len = (size_t)(item_end - item);
        if (len == 1 && item[0] == '*')
            return star;
        for (size_t i = 0; i < set->count; i++)
            if (len != 0 && item_matches(item, len, set->tags[i], strong))
                return true;
    }
    return false;
}

static int64_t last_modified_of(const store_meta_t *meta)
{
    return meta->last_modified != NULL ? cache_parse_http_date(meta->last_modified, strlen(meta->last_modified)) : -1;
}

int conditional_evaluate(const cache_request_t *c, const store_meta_t *meta, const record_t *record)
{
    if (c->if_match.base == NULL && c->if_none_match.base == NULL && c->if_modified_since < 0 &&
        c->if_unmodified_since < 0 && c->if_generation_match < 0 && c->if_generation_not_match < 0 &&
        c->if_metageneration_match < 0 && c->if_metageneration_not_match < 0)
        return 0; /* the common case: nothing to evaluate */
    etag_set_t etags;
    etag_set_init(&etags, meta, record);
    int64_t modified = last_modified_of(meta);
    if ((c->if_generation_match >= 0 && c->if_generation_match != meta->generation) ||
        (c->if_metageneration_match >= 0 && c->if_metageneration_match != meta->metageneration) ||
        (c->if_match.base != NULL && !list_matches(c->if_match, &etags, false, true)) ||
        (c->if_match.base == NULL && c->if_unmodified_since >= 0 && modified > c->if_unmodified_since))
        return 412;
    if ((c->if_generation_not_match >= 0 && c->if_generation_not_match == meta->generation) ||
        (c->if_metageneration_not_match >= 0 && c->if_metageneration_not_match == meta->metageneration))
        return 304;
    if (c->if_none_match.base != NULL)
        return list_matches(c->if_none_match, &etags, false, true) ? 304 : 0;
    if (c->if_modified_since >= 0 && modified >= 0 && modified <= c->if_modified_since)
        return 304;
    return 0;
}

bool conditional_needs_last_modified(const cache_request_t *c, const store_meta_t *meta)
{
    if (meta->last_modified != NULL)
        return false;
    bool by_date = (c->if_modified_since >= 0 && c->if_none_match.base == NULL) ||
                   (c->if_unmodified_since >= 0 && c->if_match.base == NULL);
    if (c->if_range.base != NULL && c->range.present) {
        const char *v = c->if_range.base;
        size_t len = c->if_range.len;
        while (len > 0 && *v == ' ')
            v++, len--;
        by_date = by_date || cache_parse_http_date(v, len) >= 0;
    }
    return by_date;
}

bool conditional_if_range_holds(const cache_request_t *c, const store_meta_t *meta, const record_t *record)
{
    if (c->if_range.base == NULL || !c->range.present)
        return true;
    const char *v = c->if_range.base;
    size_t len = c->if_range.len;
    while (len > 0 && *v == ' ')
        v++, len--;
    /* An entity-tag starts with a quote or W/ (a JSON API ETag is unquoted: anything that is not a date is a tag). */
    int64_t date = cache_parse_http_date(v, len);
    if (date >= 0)
        return date == last_modified_of(meta); /* RFC 9110 13.1.5: an exact match of Last-Modified */
    etag_set_t etags;
    etag_set_init(&etags, meta, record);
    for (size_t i = 0; i < etags.count; i++)
        if (item_matches(v, len, etags.tags[i], true))
            return true;
    return false;
}
