/* perceiver-cl init-random: a random-weight model folder, for benchmarks and reference checks
 * without Python. */
#include "cli/cli.h"

#include "perceiver/presets.h"

#include <stdlib.h>
#include <string.h>

static const cli_option options[] = {
    {"preset", CLI_KEY, "NAME", "built-in config (perceiver-cl bench --list-presets)"},
    {"config", CLI_KEY + 1, "FILE", "a config.json"},
    {"out", 'o', "DIR", "output folder (created if needed)"},
    {"seed", CLI_KEY + 2, "N", "random seed (default 1)"},
    {0},
};

const cli_command cli_cmd_init_random = {
    "init-random", "(--preset NAME | --config FILE) --out DIR [--seed N]",
    "Writes DIR/config.json and DIR/model.safetensors with deterministic random weights\n"
    "(N(0, 0.02); LayerNorm weights N(1, 0.02)) in the Hugging Face layout, loadable by\n"
    "transformers' from_pretrained and by perceiver-cl.\n",
    options, CLI_QUIET, NULL,
};

int cmd_init_random(int argc, char **argv)
{
    cli_parser p;
    const char *preset = NULL, *config = NULL, *out = NULL;
    long seed = 1;
    cli_parse_begin(&p, &cli_cmd_init_random, argc, argv);
    for (int c; (c = cli_parse_next(&p)) != -1;) {
        switch (c) {
        case CLI_HELP: return EXIT_OK;
        case CLI_KEY: preset = p.arg; break;
        case CLI_KEY + 1: config = p.arg; break;
        case 'o': out = p.arg; break;
        case CLI_KEY + 2:
            if (!cli_int(&p, 0, 0x7fffffffL, &seed))
                return EXIT_USAGE;
            break;
        default: return EXIT_USAGE;
        }
    }
    if (p.first_operand < argc)
        return cli_usage_error("init-random", "unexpected argument '%s'", argv[p.first_operand]);
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
    cli_info("writing %s (%lld parameters) to %s", pcv_arch_name(pcv_model_arch(m)),
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
