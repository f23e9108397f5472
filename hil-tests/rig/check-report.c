/* rig-check-report: checks a unit report written inside the rig VM, on the host, against
 * the scenario's expectations (schema validation plus key/value assertions), so a scenario
 * fails with the field that differs.
 *
 *   rig-check-report FILE [CHECK...]
 *
 * CHECK is PATH OP VALUE, with OP one of  =  (equal)  !=  (not equal)  ~  (contains)
 * >=  <=  (numbers), or PATH? (present) and PATH! (absent); a VALUE of @OTHER compares
 * with the scalar at path OTHER in the same report. PATH is dotted as in
 * reports/report.h st_rget ("steps.2.outcome"); in a sequence a part that is not a number
 * picks the first item whose name or role is that part: "steps.verify.sha256",
 * "images.combined.sha256". Exit status: 0 all checks hold, 1 a check failed or the report
 * does not validate, 2 usage error or unreadable file. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reports/report.h"
#include "station/core/err.h"

static const st_rnode *seq_pick(const st_rnode *seq, const char *part)
{
    char *end;
    unsigned long idx = strtoul(part, &end, 10);
    if (*part && !*end)
        return st_rnode_child(seq, idx);
    for (size_t i = 0; i < st_rnode_len(seq); i++) {
        const st_rnode *item = st_rnode_child(seq, i);
        const char *n = st_rget_str(item, "name");
        const char *r = st_rget_str(item, "role");
        if ((n && strcmp(n, part) == 0) || (r && strcmp(r, part) == 0))
            return item;
    }
    return NULL;
}

/* Like st_rget, plus selection of sequence items by name/role. */
static const st_rnode *lookup(const st_rnode *root, const char *path)
{
    char buf[512];
    if (strlen(path) >= sizeof(buf))
        return NULL;
    strcpy(buf, path);
    const st_rnode *n = root;
    for (char *save = NULL, *part = strtok_r(buf, ".", &save); part && n;
         part = strtok_r(NULL, ".", &save)) {
        if (st_rnode_type(n) == ST_RSEQ) {
            n = seq_pick(n, part);
        } else if (st_rnode_type(n) == ST_RMAP) {
            const st_rnode *next = NULL;
            for (size_t i = 0; i < st_rnode_len(n) && !next; i++) {
                const st_rnode *c = st_rnode_child(n, i);
                if (strcmp(st_rnode_key(c), part) == 0)
                    next = c;
            }
            n = next;
        } else {
            n = NULL;
        }
    }
    return n;
}

static bool check(const st_rnode *doc, const char *arg)
{
    static const char *const ops[] = {"!=", ">=", "<=", "=", "~"};
    size_t plen = strcspn(arg, "!<>=~?");
    char path[512];
    if (plen == 0 || plen >= sizeof(path)) {
        printf("FAIL %s: bad check (PATH=VALUE, PATH~TEXT, PATH?, ...)\n", arg);
        return false;
    }
    memcpy(path, arg, plen);
    path[plen] = 0;
    const char *rest = arg + plen;
    const st_rnode *n = lookup(doc, path);
    const char *got = n ? st_rnode_text(n) : NULL;
    if (strcmp(rest, "?") == 0 || strcmp(rest, "!") == 0) {
        bool want = rest[0] == '?';
        if ((n != NULL) == want) {
            printf("ok   %s %s\n", path, want ? "present" : "absent");
            return true;
        }
        printf("FAIL %s: expected %s\n", path, want ? "present" : "absent");
        return false;
    }
    const char *op = NULL;
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]) && !op; i++)
        if (strncmp(rest, ops[i], strlen(ops[i])) == 0)
            op = ops[i];
    if (!op) {
        printf("FAIL %s: unknown operator\n", arg);
        return false;
    }
    const char *want = rest + strlen(op);
    if (want[0] == '@') {
        const st_rnode *o = lookup(doc, want + 1);
        if (!o || !st_rnode_text(o)) {
            printf("FAIL %s: %s is absent\n", arg, want + 1);
            return false;
        }
        want = st_rnode_text(o);
    }
    if (!got) {
        printf("FAIL %s: %s (expected %s %s)\n", path, n ? "not a scalar" : "absent", op, want);
        return false;
    }
    bool ok;
    if (strcmp(op, "=") == 0) {
        ok = strcmp(got, want) == 0;
    } else if (strcmp(op, "!=") == 0) {
        ok = strcmp(got, want) != 0;
    } else if (strcmp(op, "~") == 0) {
        ok = strstr(got, want) != NULL;
    } else {
        char *e1, *e2;
        double g = strtod(got, &e1), w = strtod(want, &e2);
        ok = *got && *want && !*e1 && !*e2 && (op[0] == '>' ? g >= w : g <= w);
    }
    printf("%s %s %s %s (got %s)\n", ok ? "ok  " : "FAIL", path, op, want, got);
    return ok;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        fprintf(argc < 2 ? stderr : stdout,
                "usage: rig-check-report FILE [PATH=VALUE | PATH!=VALUE | PATH~TEXT | "
                "PATH>=N | PATH<=N | PATH? | PATH!]...\n");
        return argc < 2 ? 2 : 0;
    }
    st_err e = {0};
    st_rnode *doc = NULL;
    if (st_report_load(argv[1], &doc, &e) < 0) {
        fprintf(stderr, "rig-check-report: %s: %s\n", argv[1], e.msg);
        return 2;
    }
    bool ok = true;
    if (st_report_validate(doc, &e) < 0) {
        printf("FAIL %s: schema: %s\n", argv[1], e.msg);
        ok = false;
    }
    for (int i = 2; i < argc; i++)
        ok &= check(doc, argv[i]);
    st_report_free(doc);
    return ok ? 0 : 1;
}
