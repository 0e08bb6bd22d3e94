/*
 * cli.c — the flag parser and error reporting the `attn` subcommands share.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void print_default(const cli_opt *o, FILE *out) {
    switch (o->kind) {
    case CLI_INT:   fprintf(out, " (default %d)", *(int *)o->dst); break;
    case CLI_FLOAT: fprintf(out, " (default %g)", *(float *)o->dst); break;
    case CLI_U64:   fprintf(out, " (default %llu)", (unsigned long long)*(uint64_t *)o->dst); break;
    case CLI_STR:
        if (*(const char **)o->dst) fprintf(out, " (default %s)", *(const char **)o->dst);
        break;
    case CLI_BOOL:  break;
    }
}

void cli_usage(const cli_cmd *cmd, FILE *out) {
    fprintf(out, "usage: %s\n", cmd->usage);
    if (cmd->about) fprintf(out, "\n%s\n", cmd->about);
    fprintf(out, "\noptions:\n");
    for (int i = 0; i < cmd->n_opts; i++) {
        const cli_opt *o = &cmd->opts[i];
        char left[64];
        snprintf(left, sizeof left, "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        fprintf(out, "  %-22s %s", left, o->help);
        print_default(o, out);
        fputc('\n', out);
    }
    fprintf(out, "  %-22s %s\n", "-h, --help", "show this help and exit");
}

static int parse_value(const cli_opt *o, const char *s) {
    char *end = NULL;
    errno = 0;
    switch (o->kind) {
    case CLI_INT: {
        long v = strtol(s, &end, 10);
        if (errno || end == s || *end || v < -2147483647L || v > 2147483647L) return -1;
        *(int *)o->dst = (int)v;
        return 0;
    }
    case CLI_FLOAT: {
        float v = strtof(s, &end);
        if (errno || end == s || *end || !isfinite(v)) return -1;
        *(float *)o->dst = v;
        return 0;
    }
    case CLI_U64: {
        if (*s == '-') return -1;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end == s || *end) return -1;
        *(uint64_t *)o->dst = (uint64_t)v;
        return 0;
    }
    case CLI_STR:
        *(const char **)o->dst = s;
        return 0;
    case CLI_BOOL:
        *(int *)o->dst = 1;
        return 0;
    }
    return -1;
}

static int fail(const cli_cmd *cmd, const char *fmt, const char *a) {
    fprintf(stderr, "attn: ");
    fprintf(stderr, fmt, a);
    fprintf(stderr, "\n\n");
    cli_usage(cmd, stderr);
    return 2;
}

int cli_parse(const cli_cmd *cmd, int argc, char **argv, const char **pos, int *n_pos) {
    int np = 0, only_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!only_pos && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
            cli_usage(cmd, stdout);
            return 0;
        }
        if (!only_pos && strcmp(a, "--") == 0) { only_pos = 1; continue; }
        if (only_pos || a[0] != '-' || a[1] == '\0') {
            if (np >= cmd->max_pos) return fail(cmd, "unexpected argument '%s'", a);
            pos[np++] = a;
            continue;
        }
        if (a[1] != '-') return fail(cmd, "unknown option '%s'", a);
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const cli_opt *o = NULL;
        for (int j = 0; j < cmd->n_opts; j++)
            if (strlen(cmd->opts[j].name) == len && strncmp(cmd->opts[j].name, name, len) == 0) o = &cmd->opts[j];
        if (!o) return fail(cmd, "unknown option '%s'", a);
        const char *val = NULL;
        if (o->kind == CLI_BOOL) {
            if (eq) return fail(cmd, "option '--%s' takes no value", o->name);
        } else if (eq) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            return fail(cmd, "option '--%s' needs a value", o->name);
        }
        if (parse_value(o, val) != 0) {
            char msg[160];
            snprintf(msg, sizeof msg, "invalid value '%s' for --%s", val, o->name);
            return fail(cmd, "%s", msg);
        }
    }
    if (np < cmd->min_pos) return fail(cmd, "%s", "missing argument");
    if (n_pos) *n_pos = np;
    return -1;
}

int cli_fail(attn_status st, const char *what) {
    if (st == ATTN_OK) return 0;
    fprintf(stderr, "attn: %s: %s\n", what, attn_status_string(st));
    return 1;
}
