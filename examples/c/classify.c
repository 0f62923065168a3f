/* A complete image classifier on perceiver-cl's library: top classes of PNG/JPEG files.
 *
 *   classify MODEL IMAGE...     (MODEL: a Hugging Face folder or a DeepMind checkpoint)
 *
 * Build against an installed perceiver-cl with either
 *   cc classify.c $(pkg-config --cflags --libs perceiver) -o classify
 * or CMake (CMakeLists.txt here: find_package(perceiver), target perceiver::perceiver). */
#include <perceiver/tasks.h>

#include <stdio.h>
#include <stdlib.h>

enum { TOP = 3 };

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODEL IMAGE...\n", argv[0]);
        return 2;
    }
    printf("perceiver-cl library %s\n", PCV_VERSION_STRING);
    pcv_error err;
    pcv_model *model;
    if (pcv_model_load(argv[1], NULL, &model, &err) != PCV_OK) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    int n = argc - 2;
    pcv_class_score *top = malloc((size_t)n * TOP * sizeof *top);
    int rc = 0;
    if (!top || pcv_classify_files(model, (const char *const *)argv + 2, n, TOP, top, &err) != PCV_OK) {
        fprintf(stderr, "error: %s\n", top ? err.msg : "out of memory");
        rc = 1;
    }
    for (int i = 0; i < n && !rc; i++) {
        printf("%s\n", argv[2 + i]);
        for (int r = 0; r < TOP && top[i * TOP + r].index >= 0; r++) {
            const pcv_class_score *s = &top[i * TOP + r];
            printf("  %6.2f%%  %s (%d)\n", 100.0 * s->probability, s->label ? s->label : "?", s->index);
        }
    }
    free(top);
    pcv_model_free(model);
    return rc;
}
