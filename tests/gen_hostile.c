/* Writes the hostile inputs of issue 12 for the shell tests (tests/cli_hostile.sh) and the fuzz
 * seed corpus, so that no large reproducer is committed:
 *   gen_hostile KIND OUT
 * KIND: dag-pickle, shared-pickle, unbuilt-pickle (see hostile.h). */
#include "hostile.h"

#include <stdio.h>
#include <string.h>

static int write_out(const char *path, const hbuf *b)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b->p, 1, b->n, f) != b->n || fclose(f) != 0) {
        perror(path);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: gen_hostile KIND OUT\n");
        return 2;
    }
    const char *kind = argv[1];
    hbuf b = {0};
    if (!strcmp(kind, "dag-pickle"))
        gen_dag_pickle(&b, 7, 16);
    else if (!strcmp(kind, "shared-pickle"))
        gen_shared_array_pickle(&b, 1024, 300);
    else if (!strcmp(kind, "unbuilt-pickle"))
        gen_unbuilt_pickle(&b);
    else {
        fprintf(stderr, "gen_hostile: unknown kind '%s'\n", kind);
        return 2;
    }
    int rc = write_out(argv[2], &b);
    free(b.p);
    return rc;
}
