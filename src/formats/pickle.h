/* A safe Python pickle reader (protocols 0 to 5) for checkpoint files.
 *
 * Nothing is ever executed or imported: GLOBAL / STACK_GLOBAL only produce a reference to an
 * entry of a fixed whitelist (NumPy array reconstruction and dtypes under the NumPy 1.x and
 * 2.x module paths, Haiku's mapping classes, collections.OrderedDict, the torch tensor rebuild
 * functions and storage types, ml_dtypes.bfloat16); REDUCE / NEWOBJ / BUILD interpret those few
 * callables with their documented semantics and refuse anything else. Any other global is an
 * error that names it (e.g. "posix.system").
 *
 * The result is a tree of pk_obj nodes (memo references are shared, not copied). NumPy arrays
 * come out as PK_ARRAY nodes in C order and little-endian; torch tensors come out as PK_TENSOR
 * nodes that reference PK_STORAGE nodes, which the caller resolves to bytes (torchzip.c) and then
 * turns into arrays with pk_resolve_tensors().
 *
 * Hardening: every length is checked against the remaining input before anything is allocated;
 * all allocations count against a budget (2 x input size + the pickle_bytes limit, 128 MiB by
 * default), which the consumers also charge with what they derive (pk_budget_take); memo indices
 * are bounded; marks must balance; arrays made by numpy _reconstruct must be filled by BUILD;
 * cycles cannot make the reader loop (it never recurses over the object graph) and consumers walk
 * the tree with depth and node limits (shared references count each time they are reached). */
#ifndef PCV_PICKLE_H
#define PCV_PICKLE_H

#include "perceiver/perceiver.h"

typedef enum pk_kind {
    PK_NONE, PK_BOOL, PK_INT, PK_BIGINT, PK_FLOAT, PK_STR, PK_BYTES,
    PK_TUPLE, PK_LIST, PK_SET, PK_DICT,
    PK_GLOBAL,  /* a whitelisted class or function (never called directly) */
    PK_DTYPE,   /* numpy.dtype */
    PK_ARRAY,   /* a numeric array: C order, little-endian, data may be unaligned */
    PK_STORAGE, /* a torch storage (persistent id), bytes supplied by the container */
    PK_TENSOR   /* a torch tensor view of a storage; becomes PK_ARRAY in pk_resolve_tensors */
} pk_kind;

typedef struct pk_obj pk_obj;

typedef struct pk_array {
    pcv_dtype dtype;
    int ndim;
    int64_t shape[PCV_MAX_DIMS];
    const unsigned char *data; /* numel * dtype size bytes */
    size_t nbytes;
    bool pending; /* created by numpy _reconstruct, waiting for its BUILD */
    size_t pos;   /* byte offset of that _reconstruct (messages) */
    /* PK_TENSOR only */
    pk_obj *storage;
    int64_t offset;                 /* in elements */
    int64_t stride[PCV_MAX_DIMS];   /* in elements */
} pk_array;

typedef struct pk_storage {
    pcv_dtype dtype; /* PCV_DT_U8 for torch.UntypedStorage */
    const unsigned char *key;
    size_t keylen;
    int64_t numel;   /* elements of dtype */
    size_t nbytes;   /* numel * dtype size */
    const unsigned char *data; /* set by the container; NULL until then */
    bool big_endian;           /* the container says the bytes are big-endian */
} pk_storage;

struct pk_obj {
    pk_kind kind;
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            const unsigned char *p; /* STR: UTF-8; BYTES: raw; BIGINT: two's complement LE */
            size_t n;
        } s;
        struct {
            pk_obj **v;
            size_t n, cap;
        } seq; /* TUPLE, LIST, SET */
        struct {
            pk_obj **k, **v;
            size_t n, cap;
            bool odict; /* built by collections.OrderedDict: BUILD state is ignored */
        } dict;
        int global; /* index into the whitelist */
        struct {
            pcv_dtype dt; /* PCV_DT_INVALID for a dtype this reader does not convert */
            char code[8];  /* typestr without byte order, e.g. "f4", for messages */
            char order;   /* '<', '>', '|' or '=' */
        } dtype;
        pk_array *arr;    /* ARRAY, TENSOR */
        pk_storage *st;   /* STORAGE */
    } u;
};

typedef struct pk_options {
    const char *name;       /* file name for messages */
    bool allow_persistent;  /* accept BINPERSID ('storage', ...) ids (torch files) */
    size_t max_alloc;       /* allocation budget beyond 2 x input size; 0 = the pickle_bytes limit
                               (128 MiB by default) */
} pk_options;

typedef struct pk_block pk_block;

typedef struct pk_doc {
    pk_obj *root;
    size_t end;      /* offset just past STOP */
    int protocol;    /* from PROTO, 0 if absent */
    pk_obj **storages;
    size_t nstorages, capstorages;
    pk_obj **tensors;
    size_t ntensors, captensors;
    /* internal */
    pk_block *blocks;
    void **bufs;
    size_t nbufs, capbufs;
    size_t used, limit, len;
    const char *name;
} pk_doc;

/* Parses one pickle from buf[0..len) (it may be followed by other data: doc->end says where
 * it stopped). On failure the doc is freed and err names the file, byte offset and reason. */
int pk_load(pk_doc *doc, const unsigned char *buf, size_t len, const pk_options *opt,
            pcv_error *err);
void pk_doc_free(pk_doc *doc);
/* Charges n bytes of memory derived from the doc after loading (the Haiku tree walk, transposed
 * copies) to its budget; an error naming the pickle_bytes limit when it is spent. */
int pk_budget_take(pk_doc *doc, size_t n, const char *what, pcv_error *err);

/* After the caller has set every storage's data: checks each tensor's view against its storage
 * and turns it into a PK_ARRAY (zero-copy when contiguous, gathered otherwise). */
int pk_resolve_tensors(pk_doc *doc, pcv_error *err);

const char *pk_kind_name(pk_kind k);
/* "module.name" of a PK_GLOBAL */
const char *pk_global_name(const pk_obj *o, char *buf, size_t cap);
/* dict lookup by string key (the last matching entry, as Python would keep), or NULL */
pk_obj *pk_dict_get(const pk_obj *d, const char *key);
/* true when o is a str or bytes equal to s */
bool pk_str_eq(const pk_obj *o, const char *s);
bool pk_is_mapping(const pk_obj *o);

#endif
