/* SPDX-License-Identifier: MIT */
/* The in-memory idempotency key index: a tsearch() tree of entries by key, and a journal of the changes of
 * the open transaction for rollbacks. */

#include <errno.h>
#include <search.h>
#include <stdlib.h>
#include <string.h>

#include "key-index.h"

typedef struct Entry {
        KeyIndexEntry public;
        bool removed; /* removed in the open transaction: kept in the tree until the commit */
        char text[];  /* key, hash and receipt id, each NUL-terminated */
} Entry;

/* The journal records what each change needs to be undone without allocating anything: a rollback cannot
 * fail. A removal only marks the entry; the commit takes it out of the tree. */
typedef enum ChangeType {
        CHANGE_ADDED,    /* entry was put into the tree */
        CHANGE_REMOVED,  /* entry was marked removed */
        CHANGE_REPLACED, /* entry took the tree node of old, a key removed earlier in the transaction */
} ChangeType;

typedef struct Change {
        ChangeType type;
        Entry *entry;
        Entry *old;
} Change;

struct KeyIndex {
        void *root;
        size_t n_entries;

        Change *journal;
        size_t n_journal;
        size_t n_journal_allocated;
};

static int entry_compare(const void *a, const void *b) {
        return strcmp(((const Entry *) a)->public.key, ((const Entry *) b)->public.key);
}

int key_index_new(KeyIndex **ret) {
        KeyIndex *k;

        assert(ret);

        k = new0(KeyIndex, 1);
        if (!k)
                return -ENOMEM;
        *ret = k;
        return 0;
}

KeyIndex *key_index_free(KeyIndex *k) {
        if (!k)
                return NULL;

        /* Back to the committed state, where every entry is in the tree exactly once. */
        key_index_rollback(k, 0);
        free(k->journal);
        tdestroy(k->root, free);
        return mfree(k);
}

/* The tree's slot holding the entry with this key, removed or not. */
static Entry **find_slot(KeyIndex *k, const char *key) {
        Entry probe = { .public.key = key };

        return tfind(&probe, &k->root, entry_compare);
}

static Entry *find(KeyIndex *k, const char *key) {
        Entry **slot = find_slot(k, key);

        return slot && !(*slot)->removed ? *slot : NULL;
}

const KeyIndexEntry *key_index_get(KeyIndex *k, const char *key) {
        Entry *e;

        assert(k);
        assert(key);

        e = find(k, key);
        return e ? &e->public : NULL;
}

size_t key_index_size(KeyIndex *k) {
        assert(k);
        return k->n_entries;
}

/* Room for one more change, made before the tree is touched, so a change is never left unjournalled. */
static int journal_reserve(KeyIndex *k) {
        Change *j;
        size_t n;

        if (k->n_journal < k->n_journal_allocated)
                return 0;
        n = MAX(k->n_journal_allocated * 2, (size_t) 64);
        j = reallocarray(k->journal, n, sizeof(Change));
        if (!j)
                return -ENOMEM;
        k->journal = j;
        k->n_journal_allocated = n;
        return 0;
}

static Entry *entry_new(const char *key, const char *request_hash, const char *receipt_id) {
        size_t lk = strlen(key) + 1, lh = strlen(request_hash) + 1, lr = strlen(receipt_id) + 1;
        Entry *e;
        char *p;

        e = malloc(sizeof(Entry) + lk + lh + lr);
        if (!e)
                return NULL;
        e->removed = false;
        p = e->text;
        e->public.key = memcpy(p, key, lk);
        p += lk;
        e->public.request_hash = memcpy(p, request_hash, lh);
        p += lh;
        e->public.receipt_id = memcpy(p, receipt_id, lr);
        return e;
}

int key_index_add(KeyIndex *k, const char *key, const char *request_hash, const char *receipt_id) {
        Entry **slot, *e;
        int r;

        assert(k);
        assert(key);
        assert(request_hash);
        assert(receipt_id);

        slot = find_slot(k, key);
        if (slot && !(*slot)->removed)
                return -EEXIST;
        r = journal_reserve(k);
        if (r < 0)
                return r;
        e = entry_new(key, request_hash, receipt_id);
        if (!e)
                return -ENOMEM;

        if (slot) {
                /* Same key, so the tree's order holds with the new entry in the old one's node. */
                k->journal[k->n_journal++] = (Change){ .type = CHANGE_REPLACED, .entry = e, .old = *slot };
                *slot = e;
        } else {
                if (!tsearch(e, &k->root, entry_compare)) {
                        free(e);
                        return -ENOMEM;
                }
                k->journal[k->n_journal++] = (Change){ .type = CHANGE_ADDED, .entry = e };
        }
        k->n_entries++;
        return 0;
}

int key_index_remove(KeyIndex *k, const char *key, const char *receipt_id) {
        Entry *e;
        int r;

        assert(k);
        assert(key);
        assert(receipt_id);

        e = find(k, key);
        if (!e || !streq(e->public.receipt_id, receipt_id))
                return -ENOENT;
        r = journal_reserve(k);
        if (r < 0)
                return r;

        e->removed = true;
        k->journal[k->n_journal++] = (Change){ .type = CHANGE_REMOVED, .entry = e };
        k->n_entries--;
        return 0;
}

size_t key_index_mark(KeyIndex *k) {
        assert(k);
        return k->n_journal;
}

void key_index_rollback(KeyIndex *k, size_t mark) {
        assert(k);
        assert(mark <= k->n_journal);

        /* Newest first, so each change finds the tree as it left it. */
        while (k->n_journal > mark) {
                Change *c = &k->journal[--k->n_journal];

                switch (c->type) {
                case CHANGE_ADDED:
                        (void) tdelete(c->entry, &k->root, entry_compare);
                        free(c->entry);
                        k->n_entries--;
                        break;
                case CHANGE_REPLACED:
                        *find_slot(k, c->entry->public.key) = c->old;
                        free(c->entry);
                        k->n_entries--;
                        break;
                case CHANGE_REMOVED:
                        c->entry->removed = false;
                        k->n_entries++;
                        break;
                }
        }
}

void key_index_commit(KeyIndex *k) {
        assert(k);

        for (size_t i = 0; i < k->n_journal; i++) {
                Change *c = &k->journal[i];
                Entry **slot;

                if (c->type != CHANGE_REMOVED)
                        continue;
                /* Still in the tree unless a later add of the same key took its node. */
                slot = find_slot(k, c->entry->public.key);
                if (slot && *slot == c->entry)
                        (void) tdelete(c->entry, &k->root, entry_compare);
                free(c->entry);
        }
        k->n_journal = 0;
}
