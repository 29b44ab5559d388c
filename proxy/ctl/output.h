/*
 * output.h - how larderctl prints: sizes in binary units, the server's JSON
 * pretty-printed, and text made safe for a one-line message.
 */
#ifndef LARDERCTL_OUTPUT_H
#define LARDERCTL_OUTPUT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* "512 B", "1.5 KiB", "10.0 GiB": the units larder's own settings use. out holds at least 16 bytes. */
void format_bytes(uint64_t bytes, char *out, size_t cap);

/* Writes json indented, keys in the server's order, and a newline to stdout; -1 when it could not. */
int print_json(const json_t *json);

/* Copies at most cap - 1 bytes of text into out with every control byte (a newline too) made a space,
 * so text from elsewhere cannot break a one-line message. */
void one_line(const char *text, size_t len, char *out, size_t cap);

#endif
