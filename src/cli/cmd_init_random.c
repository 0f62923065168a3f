/* perceiver-cl init-random: a random-weight model folder, for benchmarks and reference checks
 * without Python. */
#include "cli/cli.h"

#include "perceiver/presets.h"

#include <stdlib.h>
#include <string.h>

static const char help[] =
    "Usage: perceiver-cl init-random (--preset NAME | --config FILE) --out DIR [--seed N]\n"
    "\n"
    "Writes DIR/config.json and DIR/model.safetensors with deterministic random weights\n"
    "(N(0, 0.02); LayerNorm weights N(1, 0.02)) in the Hugging Face layout, loadable by\n"
    "transformers' from_pretrained and by perceiver-cl.\n"
    "\n"
    "Options:\n"
    "  --preset NAME   built-in config (perceiver-cl bench --list-presets)\n"
    "  --config FILE   a config.json\n"
    "  --out DIR       output folder (created if needed)\n"
    "  --seed N        random seed (default 1)\n"
    "  --help          this text\n";

int cmd_init_random(int argc, char **argv)
{
    cli_args a;
    const char *preset = NULL, *config = NULL, *out = NULL;
    long seed = 1;
    bool bad = false;
    cli_init(&a, argc, argv, 2);
    while (a.i < a.argc && !bad) {
        if (cli_opt(&a, "--help", "-h", false, &bad)) {
            fputs(help, stdout);
            return EXIT_OK;
        } else if (cli_opt(&a, "--preset", NULL, true, &bad)) {
            preset = a.value;
        } else if (cli_opt(&a, "--config", NULL, true, &bad)) {
            config = a.value;
        } else if (cli_opt(&a, "--out", "-o", true, &bad)) {
            out = a.value;
        } else if (cli_opt(&a, "--seed", NULL, true, &bad)) {
            if (a.value && !cli_parse_int(a.value, 0, 0x7fffffffL, &seed))
                return cli_usage_error("init-random", "--seed needs a non-negative number");
        } else {
            return cli_usage_error("init-random", "unknown argument '%s'", a.argv[a.i]);
        }
    }
    if (bad)
        return EXIT_USAGE;
    if (!!preset + !!config != 1 || !out)
        return cli_usage_error("init-random", "give --out and exactly one of --preset, --config");

    pcv_error err = {0};
    pcv_config cfg;
    pcv_model *m = NULL;
    pcv_model_options opt = {0};
    int rc = EXIT_FAIL;
    pcv_config_init(&cfg);
    if (preset && pcv_config_preset(preset, &cfg, &err))
        goto done;
    if (config && pcv_config_load(&cfg, config, &err))
        goto done;
    if (pcv_model_create_random(&cfg, (uint64_t)seed, &opt, &m, &err))
        goto done;
    fprintf(stderr, "perceiver-cl: writing %s (%lld parameters) to %s\n", pcv_arch_name(pcv_model_arch(m)),
            (long long)pcv_model_num_params(m), out);
    if (pcv_model_save(m, out, &err))
        goto done;
    rc = EXIT_OK;
done:
    if (rc)
        cli_fail(&err);
    pcv_model_free(m);
    pcv_config_free(&cfg);
    return rc;
}
