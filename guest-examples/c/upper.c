/*
 * `upper` in C: upper-cases the text (ASCII letters) and publishes the input and the
 * result as shared state, like the Rust and Python `upper`. Its state has the same JSON
 * shape, so a checkpoint taken with one resumes with the other.
 *
 * Built with clang and wasi-libc against bindings from `wit-bindgen c`, then made a
 * component with `wasm-tools component new` and the WASI preview1 adapter:
 * see ../build-polyglot.sh.
 */
#include "executor.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The executor's state: a counter and the last input and output as JSON text
 * (NULL while there is none). */
static uint64_t count;
static char *last_input;
static char *last_output;

/* Reports `text` as the call's error. */
static bool fail(executor_string_t *err, const char *text) {
    executor_string_dup(err, text);
    return false;
}

/* Length of the JSON string literal at `s` (quotes included), or 0 when `s` does not
 * start with one that ends before `end`. */
static size_t json_string_len(const uint8_t *s, const uint8_t *end) {
    if (s >= end || *s != '"') return 0;
    for (const uint8_t *p = s + 1; p < end; p++) {
        if (*p == '\\') {
            p++;
        } else if (*p == '"') {
            return (size_t)(p - s) + 1;
        } else if (*p < 0x20) {
            return 0;
        }
    }
    return 0;
}

/* Copies `len` bytes into a new NUL-terminated string. */
static char *copy(const uint8_t *s, size_t len) {
    char *out = malloc(len + 1);
    memcpy(out, s, len);
    out[len] = '\0';
    return out;
}

/* Upper-cases the ASCII letters of a JSON string literal, leaving escapes alone (so
 * `\n` stays a newline and `\u00e9` stays é). */
static char *json_upper(const char *literal) {
    char *out = strdup(literal);
    for (char *p = out; *p; p++) {
        if (*p == '\\') {
            p++;
        } else if (*p >= 'a' && *p <= 'z') {
            *p = (char)(*p - 'a' + 'A');
        }
    }
    return out;
}

static void set_shared(const char *key, const char *json) {
    executor_string_t k = {(uint8_t *)key, strlen(key)};
    executor_list_u8_t v = {(uint8_t *)json, strlen(json)};
    superstep_workflow_context_set_shared(&k, &v);
}

bool exports_executor_init(executor_string_t *executor_id, executor_list_u8_t *config,
                           executor_string_t *err) {
    (void)err;
    executor_string_free(executor_id);
    executor_list_u8_free(config);
    return true;
}

bool exports_executor_handle(executor_envelope_t *envelope, executor_string_t *err) {
    executor_list_u8_t *body = &envelope->message.body;
    size_t len = json_string_len(body->ptr, body->ptr + body->len);
    bool ok = len == body->len;
    if (ok) {
        char *input = copy(body->ptr, len);
        char *output = json_upper(input);
        count++;
        set_shared("original_input", input);
        set_shared("upper_output", output);
        superstep_workflow_context_message_t message = {
            .kind = {(uint8_t *)"text", 4},
            .body = {(uint8_t *)output, strlen(output)},
        };
        executor_string_t send_err;
        if (!superstep_workflow_context_send_message(&message, NULL, &send_err)) {
            *err = send_err;
            free(input);
            free(output);
            ok = false;
        } else {
            free(last_input);
            free(last_output);
            last_input = input;
            last_output = output;
        }
    } else {
        fail(err, "the message body is not a JSON string");
    }
    executor_envelope_free(envelope);
    return ok;
}

bool exports_executor_on_response(executor_string_t *request_id, executor_message_t *response,
                                  executor_string_t *err) {
    executor_string_free(request_id);
    executor_message_free(response);
    return fail(err, "upper asks for no input");
}

void exports_executor_snapshot(executor_list_u8_t *ret) {
    const char *in = last_input ? last_input : "null";
    const char *out = last_output ? last_output : "null";
    size_t cap = strlen(in) + strlen(out) + 96;
    char *json = malloc(cap);
    int n = snprintf(json, cap, "{\"count\":%" PRIu64 ",\"last_input\":%s,\"last_output\":%s}",
                     count, in, out);
    ret->ptr = (uint8_t *)json;
    ret->len = (size_t)n;
}

/* Reads the value at `*p` into `*out`: a JSON string literal (copied), or null. */
static bool read_text(const uint8_t **p, const uint8_t *end, char **out) {
    if (end - *p >= 4 && memcmp(*p, "null", 4) == 0) {
        *p += 4;
        *out = NULL;
        return true;
    }
    size_t len = json_string_len(*p, end);
    if (len == 0) return false;
    *out = copy(*p, len);
    *p += len;
    return true;
}

static void skip_space(const uint8_t **p, const uint8_t *end) {
    while (*p < end && (**p == ' ' || **p == '\n' || **p == '\r' || **p == '\t')) (*p)++;
}

/* Restores a state written by any `upper`: a JSON object with `count`, `last_input`
 * and `last_output`, in any order and spacing. */
bool exports_executor_restore(executor_list_u8_t *state, executor_string_t *err) {
    /* A NUL-terminated copy, so that strtoull cannot read past the end. */
    char *text = copy(state->ptr, state->len);
    const uint8_t *p = (const uint8_t *)text, *end = p + state->len;
    uint64_t new_count = 0;
    char *input = NULL, *output = NULL;
    bool ok = false;
    skip_space(&p, end);
    if (p < end && *p == '{') {
        p++;
        for (;;) {
            skip_space(&p, end);
            size_t key_len = json_string_len(p, end);
            if (key_len == 0) break;
            const uint8_t *key = p + 1;
            p += key_len;
            skip_space(&p, end);
            if (p >= end || *p != ':') break;
            p++;
            skip_space(&p, end);
            if (key_len == 7 && memcmp(key, "count", 5) == 0) {
                char *num_end;
                new_count = strtoull((const char *)p, &num_end, 10);
                if ((const uint8_t *)num_end == p) break;
                p = (const uint8_t *)num_end;
            } else if (key_len == 12 && memcmp(key, "last_input", 10) == 0) {
                free(input);
                if (!read_text(&p, end, &input)) break;
            } else if (key_len == 13 && memcmp(key, "last_output", 11) == 0) {
                free(output);
                if (!read_text(&p, end, &output)) break;
            } else {
                break;
            }
            skip_space(&p, end);
            if (p < end && *p == ',') {
                p++;
                continue;
            }
            skip_space(&p, end);
            ok = p < end && *p == '}';
            break;
        }
    }
    if (ok) {
        count = new_count;
        free(last_input);
        free(last_output);
        last_input = input;
        last_output = output;
    } else {
        free(input);
        free(output);
        fail(err, "the state is not an `upper` state ({\"count\", \"last_input\", \"last_output\"})");
    }
    free(text);
    executor_list_u8_free(state);
    return ok;
}
