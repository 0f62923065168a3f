/* DeepMind Haiku parameter trees -> Hugging Face names (see haiku.h).
 *
 * The renamer is written as tables rather than as the chain of substring replacements of
 * transformers' convert_perceiver_haiku_to_pytorch.py, but produces the same names and value
 * transforms (docs/checkpoints.md): an exact-name table for the embeddings,
 * position tables, pre- and post-processors and decoder heads, and one table per attention
 * block kind (cross / self) for everything under an encoder or decoder attention scope. */
#include "formats/haiku.h"
#include "util/error.h"
#include "util/limits.h"


#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- flattening ---------------------------------------------------------------------------- */

#define HK_MAX_DEPTH 8   /* Haiku trees are 2 levels deep; deeper means a hostile or odd file */
#define HK_MAX_NAME 1024 /* bytes of a flattened name ("scope/~/sub/param"); real ones are < 200 */

typedef struct flat {
    hk_param *p;
    size_t n, cap;
    const char *file;
    pcv_error *err;
    pk_doc *doc;     /* its memory budget pays for the names and the table */
    int64_t visited; /* values reached, counting a shared sub-tree each time it is reached */
} flat;

static int key_text(const flat *f, const pk_obj *k, const char *prefix, const char **s, size_t *n)
{
    if (k->kind != PK_STR && k->kind != PK_BYTES)
        return pcv_set_error(f->err, PCV_ERR_FORMAT, "%s: a key under '%s' is a %s, not a string",
                             f->file, prefix[0] ? prefix : "(top level)", pk_kind_name(k->kind));
    if (memchr(k->u.s.p, '\0', k->u.s.n) || k->u.s.n == 0)
        return pcv_set_error(f->err, PCV_ERR_FORMAT, "%s: empty key or NUL byte in a key under '%s'",
                             f->file, prefix[0] ? prefix : "(top level)");
    *s = (const char *)k->u.s.p;
    *n = k->u.s.n;
    return 0;
}

static int walk(flat *f, const pk_obj *d, const char *prefix, int depth, bool state)
{
    if (depth > HK_MAX_DEPTH)
        return pcv_set_error(f->err, PCV_ERR_FORMAT, "%s: parameter tree nested deeper than %d "
                             "levels at '%s' (recursive structure?)", f->file, HK_MAX_DEPTH, prefix);
    for (size_t i = 0; i < d->u.dict.n; i++) {
        const char *ks = "";
        size_t kn = 0;
        /* a pickle is a graph: sub-dicts can be shared (memo references), so a 1 KB file can
         * describe 16^7 leaves; every value reached counts, shared or not */
        if (++f->visited > pcv_limits_now()->pickle_nodes)
            return pcv_set_error(f->err, PCV_ERR_FORMAT, "%s: the parameter tree has more than %lld entries "
                                 "(shared sub-trees count each time they are reached; DeepMind's checkpoints have "
                                 "under 2,000): over %s", f->file, (long long)pcv_limits_now()->pickle_nodes,
                                 PCV_LIMIT_TEXT("pickle_nodes"));
        int rc = key_text(f, d->u.dict.k[i], prefix, &ks, &kn);
        if (rc)
            return rc;
        size_t pl = strlen(prefix);
        if (kn > HK_MAX_NAME || pl + kn + 1 > HK_MAX_NAME)
            return pcv_set_error(f->err, PCV_ERR_FORMAT, "%s: a parameter name under '%.64s' is longer than %d "
                                 "bytes (Haiku names are under 200)", f->file, prefix[0] ? prefix : "(top level)",
                                 HK_MAX_NAME);
        if ((rc = pk_budget_take(f->doc, pl + kn + 2, "the parameter tree", f->err)))
            return rc;
        char *name = malloc(pl + kn + 2);
        if (!name)
            return pcv_set_error(f->err, PCV_ERR_OOM, "out of memory");
        snprintf(name, pl + kn + 2, "%s%s%.*s", prefix, pl ? "/" : "", (int)kn, ks);
        const pk_obj *v = d->u.dict.v[i];
        if (v->kind == PK_DICT) {
            rc = walk(f, v, name, depth + 1, state);
            free(name);
            if (rc)
                return rc;
        } else if (v->kind == PK_ARRAY) {
            if (f->n == f->cap) {
                size_t nc = f->cap ? 2 * f->cap : 64;
                if ((rc = pk_budget_take(f->doc, (nc - f->cap) * sizeof *f->p, "the parameter tree", f->err))) {
                    free(name);
                    return rc;
                }
                hk_param *q = realloc(f->p, nc * sizeof *q);
                if (!q) {
                    free(name);
                    return pcv_set_error(f->err, PCV_ERR_OOM, "out of memory");
                }
                f->p = q;
                f->cap = nc;
            }
            f->p[f->n++] = (hk_param){.name = name, .arr = v->u.arr, .state = state};
        } else {
            rc = pcv_set_error(f->err, PCV_ERR_FORMAT, "%s: '%s' is a %s, not an array or a mapping",
                               f->file, name, pk_kind_name(v->kind));
            free(name);
            return rc;
        }
    }
    return 0;
}

static int cmp_param(const void *a, const void *b)
{
    return strcmp(((const hk_param *)a)->name, ((const hk_param *)b)->name);
}

int hk_flatten(pk_doc *doc, const char *file, hk_param **out, size_t *n, pcv_error *err)
{
    *out = NULL;
    *n = 0;
    const pk_obj *root = doc->root;
    flat f = {.file = file, .err = err, .doc = doc};
    if (!pk_is_mapping(root))
        return pcv_set_error(err, PCV_ERR_FORMAT, "%s: the pickle holds a %s, not a parameter "
                             "mapping", file, root ? pk_kind_name(root->kind) : "nothing");
    const pk_obj *params = pk_dict_get(root, "params");
    int rc;
    if (params && pk_is_mapping(params)) {
        /* the ImageNet files: {'params': ..., 'state': ...} */
        const pk_obj *state = pk_dict_get(root, "state");
        rc = walk(&f, params, "", 1, false);
        if (!rc && state && pk_is_mapping(state))
            rc = walk(&f, state, "", 1, true);
    } else {
        rc = walk(&f, root, "", 1, false);
    }
    if (!rc && f.n == 0)
        rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: the pickle holds no arrays", file);
    if (!rc) {
        qsort(f.p, f.n, sizeof *f.p, cmp_param);
        for (size_t i = 1; i < f.n && !rc; i++)
            if (!strcmp(f.p[i - 1].name, f.p[i].name))
                rc = pcv_set_error(err, PCV_ERR_FORMAT, "%s: parameter '%s' appears twice", file,
                                   f.p[i].name);
    }
    if (rc) {
        hk_params_free(f.p, f.n);
        return rc;
    }
    *out = f.p;
    *n = f.n;
    return 0;
}

void hk_params_free(hk_param *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(p[i].name);
    free(p);
}

/* ---- the renamer table --------------------------------------------------------------------- */

typedef struct hk_rule {
    const char *haiku; /* may hold one {m}: a lower-case word (audio, image, label, mean, var) */
    const char *hf;    /* {m} is replaced by the captured word */
    hk_transform t;
    pcv_arch only;     /* PCV_ARCH_UNKNOWN: every architecture */
} hk_rule;

#define T_ HK_T_NONE
#define TR HK_T_REVERSE
#define SQ HK_T_SQUEEZE
#define DROP HK_T_DROP
#define PP "perceiver.input_preprocessor."
#define BN "image_preprocessor/~/conv2_d_downsample/~/batchnorm/"

/* Whole names outside the attention blocks. Order matters only where two rules could match
 * the same name (the multimodal label query comes before the generic classifier query). */
static const hk_rule leaf_rules[] = {
    /* text (MLM) */
    {"embed/embeddings", PP "embeddings.weight", T_, 0},
    {"trainable_position_encoding/pos_embs", PP "position_embeddings.weight", T_, 0},
    {"embedding_decoder/bias", "embedding_decoder.bias", T_, 0},
    /* latents */
    {"perceiver_encoder/~/trainable_position_encoding/pos_embs", "perceiver.embeddings.latents", T_, 0},
    {"encoder/~/trainable_position_encoding/pos_embs", "perceiver.embeddings.latents", T_, 0},
    /* decoder queries */
    {"basic_decoder/~/trainable_position_encoding/pos_embs",
     "perceiver.decoder.output_position_encodings.position_embeddings", T_, 0},
    {"classification_decoder/~/basic_decoder/~/trainable_position_encoding/pos_embs",
     "perceiver.decoder.modalities.label.decoder.output_position_encodings.position_embeddings",
     T_, PCV_ARCH_MULTIMODAL},
    {"classification_decoder/~/basic_decoder/~/trainable_position_encoding/pos_embs",
     "perceiver.decoder.decoder.output_position_encodings.position_embeddings", T_, 0},
    /* decoder output projections */
    {"classification_decoder/~/basic_decoder/output/w", "perceiver.decoder.decoder.final_layer.weight", TR, 0},
    {"classification_decoder/~/basic_decoder/output/b", "perceiver.decoder.decoder.final_layer.bias", T_, 0},
    {"flow_decoder/~/basic_decoder/output/w", "perceiver.decoder.decoder.final_layer.weight", TR, 0},
    {"flow_decoder/~/basic_decoder/output/b", "perceiver.decoder.decoder.final_layer.bias", T_, 0},
    {"multimodal_decoder/~/basic_decoder/output/w", "perceiver.decoder.decoder.final_layer.weight", TR, 0},
    {"multimodal_decoder/~/basic_decoder/output/b", "perceiver.decoder.decoder.final_layer.bias", T_, 0},
    {"basic_decoder/output/w", "perceiver.decoder.final_layer.weight", TR, 0},
    {"basic_decoder/output/b", "perceiver.decoder.final_layer.bias", T_, 0},
    /* ImageNet, learned positions */
    {"image_preprocessor/~/conv2_d/w", PP "convnet_1x1.weight", TR, 0},
    {"image_preprocessor/~/conv2_d/b", PP "convnet_1x1.bias", T_, 0},
    {"image_preprocessor/~_build_network_inputs/trainable_position_encoding/pos_embs",
     PP "position_embeddings.position_embeddings", T_, 0},
    {"image_preprocessor/~_build_network_inputs/position_encoding_projector/linear/w",
     PP "positions_projection.weight", TR, 0},
    {"image_preprocessor/~_build_network_inputs/position_encoding_projector/linear/b",
     PP "positions_projection.bias", T_, 0},
    /* ImageNet, conv stem: HF reverses all four kernel axes (HWIO -> OIWH, spec 12.4) */
    {"image_preprocessor/~/conv2_d_downsample/~/conv/w", PP "convnet.conv.weight", TR, 0},
    {BN "scale", PP "convnet.batchnorm.weight", SQ, 0},
    {BN "offset", PP "convnet.batchnorm.bias", SQ, 0},
    {BN "~/mean_ema/average", PP "convnet.batchnorm.running_mean", SQ, 0},
    {BN "~/var_ema/average", PP "convnet.batchnorm.running_var", SQ, 0},
    {BN "~/{m}_ema/counter", "", DROP, 0},
    {BN "~/{m}_ema/hidden", "", DROP, 0},
    /* optical flow */
    {"image_preprocessor/patches_linear/w", PP "conv_after_patches.weight", TR, 0},
    {"image_preprocessor/patches_linear/b", PP "conv_after_patches.bias", T_, 0},
    /* multimodal (modalities audio, image, label) */
    {"multimodal_preprocessor/{m}_mask_token/pos_embs", PP "mask.{m}", T_, 0},
    {"multimodal_preprocessor/{m}_padding/pos_embs", PP "padding.{m}", T_, 0},
    {"multimodal_decoder/~decoder_query/{m}_padding/pos_embs", "perceiver.decoder.padding.{m}", T_, 0},
    {"projection_postprocessor/linear/w", "perceiver.output_postprocessor.modalities.image.classifier.weight", TR, 0},
    {"projection_postprocessor/linear/b", "perceiver.output_postprocessor.modalities.image.classifier.bias", T_, 0},
    {"classification_postprocessor/linear/w", "perceiver.output_postprocessor.modalities.label.classifier.weight", TR, 0},
    {"classification_postprocessor/linear/b", "perceiver.output_postprocessor.modalities.label.classifier.bias", T_, 0},
    {"audio_postprocessor/linear/w", "perceiver.output_postprocessor.modalities.audio.classifier.weight", TR, 0},
    {"audio_postprocessor/linear/b", "perceiver.output_postprocessor.modalities.audio.classifier.bias", T_, 0},
};

/* Attention block scopes. {k} is the self-attention index: "self_attention" -> 0,
 * "self_attention_5" -> 5. */
typedef struct hk_block {
    const char *haiku, *hf;
    bool cross;
} hk_block;

static const hk_block blocks[] = {
    {"perceiver_encoder/~/cross_attention/", "perceiver.encoder.cross_attention.", true},
    {"encoder/~/cross_attention/", "perceiver.encoder.cross_attention.", true},
    {"perceiver_encoder/~/self_attention{k}/", "perceiver.encoder.self_attends.{k}.", false},
    {"encoder/~/self_attention{k}/", "perceiver.encoder.self_attends.{k}.", false},
    {"basic_decoder/cross_attention/", "perceiver.decoder.decoding_cross_attention.", true},
    {"classification_decoder/~/basic_decoder/cross_attention/",
     "perceiver.decoder.decoder.decoding_cross_attention.", true},
    {"flow_decoder/~/basic_decoder/cross_attention/",
     "perceiver.decoder.decoder.decoding_cross_attention.", true},
    {"multimodal_decoder/~/basic_decoder/cross_attention/",
     "perceiver.decoder.decoder.decoding_cross_attention.", true},
};

/* Inside a CrossAttention scope. Haiku creates, in call order: layer_norm (queries),
 * layer_norm_1 (keys/values), attention/{linear=q, linear_1=k, linear_2=v, linear_3=output},
 * layer_norm_2 (before the MLP), mlp/{linear, linear_1}. */
static const hk_rule cross_rules[] = {
    {"layer_norm/scale", "attention.self.layernorm1.weight", T_, 0},
    {"layer_norm/offset", "attention.self.layernorm1.bias", T_, 0},
    {"layer_norm_1/scale", "attention.self.layernorm2.weight", T_, 0},
    {"layer_norm_1/offset", "attention.self.layernorm2.bias", T_, 0},
    {"layer_norm_2/scale", "layernorm.weight", T_, 0},
    {"layer_norm_2/offset", "layernorm.bias", T_, 0},
    {"attention/linear/w", "attention.self.query.weight", TR, 0},
    {"attention/linear/b", "attention.self.query.bias", T_, 0},
    {"attention/linear_1/w", "attention.self.key.weight", TR, 0},
    {"attention/linear_1/b", "attention.self.key.bias", T_, 0},
    {"attention/linear_2/w", "attention.self.value.weight", TR, 0},
    {"attention/linear_2/b", "attention.self.value.bias", T_, 0},
    {"attention/linear_3/w", "attention.output.dense.weight", TR, 0},
    {"attention/linear_3/b", "attention.output.dense.bias", T_, 0},
    {"mlp/linear/w", "mlp.dense1.weight", TR, 0},
    {"mlp/linear/b", "mlp.dense1.bias", T_, 0},
    {"mlp/linear_1/w", "mlp.dense2.weight", TR, 0},
    {"mlp/linear_1/b", "mlp.dense2.bias", T_, 0},
};

/* Inside a SelfAttention scope: layer_norm (shared by q, k, v), attention, layer_norm_1 (before
 * the MLP), mlp. */
static const hk_rule self_rules[] = {
    {"layer_norm/scale", "attention.self.layernorm1.weight", T_, 0},
    {"layer_norm/offset", "attention.self.layernorm1.bias", T_, 0},
    {"layer_norm_1/scale", "layernorm.weight", T_, 0},
    {"layer_norm_1/offset", "layernorm.bias", T_, 0},
    {"attention/linear/w", "attention.self.query.weight", TR, 0},
    {"attention/linear/b", "attention.self.query.bias", T_, 0},
    {"attention/linear_1/w", "attention.self.key.weight", TR, 0},
    {"attention/linear_1/b", "attention.self.key.bias", T_, 0},
    {"attention/linear_2/w", "attention.self.value.weight", TR, 0},
    {"attention/linear_2/b", "attention.self.value.bias", T_, 0},
    {"attention/linear_3/w", "attention.output.dense.weight", TR, 0},
    {"attention/linear_3/b", "attention.output.dense.bias", T_, 0},
    {"mlp/linear/w", "mlp.dense1.weight", TR, 0},
    {"mlp/linear/b", "mlp.dense1.bias", T_, 0},
    {"mlp/linear_1/w", "mlp.dense2.weight", TR, 0},
    {"mlp/linear_1/b", "mlp.dense2.bias", T_, 0},
};

#undef T_
#undef TR
#undef SQ
#undef DROP
#undef PP
#undef BN

/* Matches name against pattern with at most one {m} (one or more [a-z0-9] characters). */
static bool match(const char *pat, const char *name, char *cap, size_t capn)
{
    const char *ph = strstr(pat, "{m}");
    if (!ph)
        return !strcmp(pat, name);
    size_t pre = (size_t)(ph - pat);
    if (strncmp(pat, name, pre))
        return false;
    const char *rest = ph + 3, *w = name + pre;
    for (size_t len = 1; w[len - 1] && (islower((unsigned char)w[len - 1]) || isdigit((unsigned char)w[len - 1])); len++)
        if (!strcmp(w + len, rest)) {
            if (len >= capn)
                return false;
            memcpy(cap, w, len);
            cap[len] = '\0';
            return true;
        }
    return false;
}

/* Writes hf with {m} / {k} replaced; false if it does not fit. */
static bool expand(char *out, size_t cap, const char *hf, const char *m, const char *k)
{
    size_t o = 0;
    for (const char *p = hf; *p; p++) {
        const char *sub = NULL;
        if (!strncmp(p, "{m}", 3))
            sub = m;
        else if (!strncmp(p, "{k}", 3))
            sub = k;
        if (sub) {
            size_t l = strlen(sub);
            if (o + l >= cap)
                return false;
            memcpy(out + o, sub, l);
            o += l;
            p += 2;
        } else {
            if (o + 1 >= cap)
                return false;
            out[o++] = *p;
        }
    }
    out[o] = '\0';
    return true;
}

/* Matches a block scope; on success *rest points after it and k holds the layer index. */
static bool match_block(const hk_block *b, const char *name, const char **rest, char *k, size_t kcap)
{
    const char *ph = strstr(b->haiku, "{k}");
    if (!ph) {
        size_t l = strlen(b->haiku);
        if (strncmp(b->haiku, name, l))
            return false;
        *rest = name + l;
        k[0] = '\0';
        return true;
    }
    size_t pre = (size_t)(ph - b->haiku);
    if (strncmp(b->haiku, name, pre))
        return false;
    const char *p = name + pre;
    if (*p == '_') { /* _N, N >= 1 without leading zeros */
        size_t d = 0;
        while (isdigit((unsigned char)p[1 + d]))
            d++;
        if (d == 0 || d >= kcap || p[1] == '0' || d > 6)
            return false;
        memcpy(k, p + 1, d);
        k[d] = '\0';
        p += 1 + d;
    } else {
        snprintf(k, kcap, "0");
    }
    const char *suffix = ph + 3; /* "/" */
    size_t sl = strlen(suffix);
    if (strncmp(p, suffix, sl))
        return false;
    *rest = p + sl;
    return true;
}

int hk_rename(const char *haiku, pcv_arch arch, char *out, size_t cap, hk_transform *t)
{
    char m[32], k[16];
    for (size_t i = 0; i < sizeof leaf_rules / sizeof *leaf_rules; i++) {
        const hk_rule *r = &leaf_rules[i];
        if (r->only && r->only != arch)
            continue;
        if (match(r->haiku, haiku, m, sizeof m)) {
            *t = r->t;
            if (r->t == HK_T_DROP) {
                if (cap)
                    out[0] = '\0';
                return 0;
            }
            return expand(out, cap, r->hf, m, "") ? 0 : -1;
        }
    }
    for (size_t i = 0; i < sizeof blocks / sizeof *blocks; i++) {
        const char *rest;
        if (!match_block(&blocks[i], haiku, &rest, k, sizeof k))
            continue;
        const hk_rule *rules = blocks[i].cross ? cross_rules : self_rules;
        size_t n = blocks[i].cross ? sizeof cross_rules / sizeof *cross_rules
                                   : sizeof self_rules / sizeof *self_rules;
        for (size_t j = 0; j < n; j++)
            if (!strcmp(rules[j].haiku, rest)) {
                char prefix[128];
                if (!expand(prefix, sizeof prefix, blocks[i].hf, "", k))
                    return -1;
                *t = rules[j].t;
                return snprintf(out, cap, "%s%s", prefix, rules[j].hf) < (int)cap ? 0 : -1;
            }
        return -1;
    }
    return -1;
}
