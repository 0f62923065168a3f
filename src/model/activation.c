/* config.hidden_act names (transformers' ACT2FN) and the activations they stand for. */
#include "perceiver/perceiver.h"
#include "util/error.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    pcv_activation act;
} names[] = {
    {"gelu", PCV_ACT_GELU},
    {"gelu_python", PCV_ACT_GELU},
    {"gelu_new", PCV_ACT_GELU_TANH},
    {"gelu_pytorch_tanh", PCV_ACT_GELU_TANH},
    {"gelu_python_tanh", PCV_ACT_GELU_TANH},
    {"gelu_accurate", PCV_ACT_GELU_TANH},
    {"gelu_fast", PCV_ACT_GELU_TANH}, /* x*c*(1 + 0.044715 x^2): the same function */
    {"gelu_10", PCV_ACT_GELU_10},
    {"quick_gelu", PCV_ACT_QUICK_GELU},
    {"relu", PCV_ACT_RELU},
    {"relu2", PCV_ACT_RELU2},
    {"relu6", PCV_ACT_RELU6},
    {"leaky_relu", PCV_ACT_LEAKY_RELU},
    {"silu", PCV_ACT_SILU},
    {"swish", PCV_ACT_SILU},
    {"mish", PCV_ACT_MISH},
    {"sigmoid", PCV_ACT_SIGMOID},
    {"tanh", PCV_ACT_TANH},
    {"linear", PCV_ACT_LINEAR},
    {"laplace", PCV_ACT_LAPLACE},
    {"hardswish", PCV_ACT_HARDSWISH},
    {"sqrtsoftplus", PCV_ACT_SQRT_SOFTPLUS},
};

pcv_status pcv_activation_from_name(const char *name, pcv_activation *act, pcv_error *err)
{
    for (size_t i = 0; name && i < sizeof names / sizeof *names; i++)
        if (!strcmp(names[i].name, name)) {
            *act = names[i].act;
            return PCV_OK;
        }
    char list[512];
    size_t len = 0;
    list[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof *names && len + 24 < sizeof list; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", names[i].name);
    bool learned = name && (!strcmp(name, "prelu") || !strcmp(name, "xielu"));
    return (pcv_status)pcv_set_error(err, PCV_ERR_UNSUPPORTED, "config: hidden_act '%s' is not supported%s (supported: "
                                     "%s)", name ? name : "(null)",
                                     learned ? ": it has learned parameters, not a fixed formula" : "", list);
}

const char *pcv_activation_name(pcv_activation act)
{
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (names[i].act == act)
            return names[i].name;
    return NULL;
}
