/*
 * cli.c — the flag parser and error reporting the `attn` subcommands share.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The text of an option's value, as the usage prints it after "default"; empty when there is none. */
static void value_text(const cli_opt *o, char *buf, size_t n) {
    buf[0] = '\0';
    switch (o->kind) {
    case CLI_INT:   snprintf(buf, n, "%d", *(int *)o->dst); break;
    case CLI_FLOAT: snprintf(buf, n, "%g", (double)*(float *)o->dst); break;
    case CLI_U64:   snprintf(buf, n, "%llu", (unsigned long long)*(uint64_t *)o->dst); break;
    case CLI_STR:
        if (*(const char **)o->dst) snprintf(buf, n, "%s", *(const char **)o->dst);
        break;
    case CLI_BOOL:  break;
    }
}

/* The defaults as they were before cli_parse wrote the user's values over them, so that a usage printed
 * after a value is rejected (by cli_parse or by the command's own checks) still shows the defaults. The
 * program parses one command per run, so one snapshot is enough. */
enum { CLI_MAX_OPTS = 48, CLI_DEFAULT_LEN = 96 };
static struct {
    const cli_opt *opts;
    int n;
    char text[CLI_MAX_OPTS][CLI_DEFAULT_LEN];
} g_defaults;

void cli_usage(const cli_cmd *cmd, FILE *out) {
    fprintf(out, "usage: %s\n", cmd->usage);
    if (cmd->about) fprintf(out, "\n%s\n", cmd->about);
    fprintf(out, "\noptions:\n");
    for (int i = 0; i < cmd->n_opts; i++) {
        const cli_opt *o = &cmd->opts[i];
        char left[64], now[CLI_DEFAULT_LEN];
        snprintf(left, sizeof left, "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        fprintf(out, "  %-22s %s", left, o->help);
        value_text(o, now, sizeof now);
        const char *def = g_defaults.opts == cmd->opts && i < g_defaults.n ? g_defaults.text[i] : now;
        /* a help that states its own default (a sentinel value meaning "what the command picks") keeps it */
        if (*def && !strstr(o->help, "(default")) fprintf(out, " (default %s)", def);
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
    g_defaults.opts = cmd->opts;
    g_defaults.n = cmd->n_opts < CLI_MAX_OPTS ? cmd->n_opts : CLI_MAX_OPTS;
    for (int i = 0; i < g_defaults.n; i++) value_text(&cmd->opts[i], g_defaults.text[i], CLI_DEFAULT_LEN);
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
