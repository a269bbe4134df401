/* SPDX-License-Identifier: MIT */
/* The in-memory idempotency key index: an open-addressing hash table of entries by key, and a journal of
 * the changes of the open transaction for rollbacks. (A tsearch() tree did the same in O(log n) string
 * comparisons, each a cache miss: with 100,000 keys, 8 % of the daemon's CPU at 64 connections.) */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "key-index.h"

typedef struct Entry {
        KeyIndexEntry public;
        bool removed; /* removed in the open transaction: kept in the table until the commit */
        char text[];  /* key, hash and receipt id, each NUL-terminated */
} Entry;

/* The journal records what each change needs to be undone without allocating anything: a rollback cannot
 * fail. A removal only marks the entry; the commit takes it out of the table. */
typedef enum ChangeType {
        CHANGE_ADDED,    /* entry was put into the table */
        CHANGE_REMOVED,  /* entry was marked removed */
        CHANGE_REPLACED, /* entry took the slot of old, a key removed earlier in the transaction */
} ChangeType;

typedef struct Change {
        ChangeType type;
        Entry *entry;
        Entry *old;
} Change;

/* A slot that held an entry: probing goes on past it, an insert may reuse it. */
#define TOMBSTONE ((Entry *) (uintptr_t) 1)
#define SLOTS_MIN 64U

struct KeyIndex {
        Entry **slots;      /* NULL: never used; TOMBSTONE; else an entry, removed or not */
        size_t n_slots;     /* a power of two */
        size_t n_occupied;  /* slots holding entries */
        size_t n_tombstones;
        size_t n_entries;   /* entries not removed */
        uint64_t seed;      /* keys come from clients: where they land should not be predictable */

        Change *journal;
        size_t n_journal;
        size_t n_journal_allocated;
};

/* FNV-1a over the key from a random basis, then MurmurHash3's final mix, so that the low bits, which pick
 * the slot, depend on all of the key. */
static uint64_t key_hash(const KeyIndex *k, const char *key) {
        uint64_t h = k->seed;

        for (const unsigned char *p = (const unsigned char *) key; *p; p++) {
                h ^= *p;
                h *= UINT64_C(0x100000001b3);
        }
        h ^= h >> 33;
        h *= UINT64_C(0xff51afd7ed558ccd);
        h ^= h >> 33;
        h *= UINT64_C(0xc4ceb9fe1a85ec53);
        h ^= h >> 33;
        return h;
}

int key_index_new(KeyIndex **ret) {
        _cleanup_free_ KeyIndex *k = NULL;

        assert(ret);

        k = new0(KeyIndex, 1);
        if (!k)
                return -ENOMEM;
        k->slots = new0(Entry *, SLOTS_MIN);
        if (!k->slots)
                return -ENOMEM;
        k->n_slots = SLOTS_MIN;
        if (getrandom(&k->seed, sizeof k->seed, GRND_NONBLOCK) != (ssize_t) sizeof k->seed)
                k->seed = UINT64_C(0xcbf29ce484222325) ^ (uint64_t) (uintptr_t) k;
        *ret = TAKE_PTR(k);
        return 0;
}

KeyIndex *key_index_free(KeyIndex *k) {
        if (!k)
                return NULL;

        /* Back to the committed state, where every entry is in the table exactly once. */
        key_index_rollback(k, 0);
        for (size_t i = 0; i < k->n_slots; i++)
                if (k->slots[i] && k->slots[i] != TOMBSTONE)
                        free(k->slots[i]);
        free(k->slots);
        free(k->journal);
        return mfree(k);
}

/* The slot holding the entry with this key, removed or not; NULL if there is none. */
static Entry **find_slot(KeyIndex *k, const char *key) {
        size_t mask = k->n_slots - 1;

        for (size_t i = key_hash(k, key) & mask;; i = (i + 1) & mask) {
                Entry *e = k->slots[i];

                if (!e)
                        return NULL;
                if (e != TOMBSTONE && streq(e->public.key, key))
                        return &k->slots[i];
        }
}

static void place(KeyIndex *k, Entry *e) {
        size_t mask = k->n_slots - 1;

        for (size_t i = key_hash(k, e->public.key) & mask;; i = (i + 1) & mask)
                if (!k->slots[i] || k->slots[i] == TOMBSTONE) {
                        if (k->slots[i] == TOMBSTONE)
                                k->n_tombstones--;
                        k->slots[i] = e;
                        k->n_occupied++;
                        return;
                }
}

/* Room for one more entry: at most 3/4 of the slots in use, tombstones included, so that probing always
 * ends at an empty slot. Else the table is rebuilt without its tombstones, twice as large as long as the
 * entries fill more than half of it. */
static int reserve_slot(KeyIndex *k) {
        Entry **old = k->slots;
        size_t n_old = k->n_slots, n = n_old;

        if ((k->n_occupied + k->n_tombstones + 1) * 4 <= n_old * 3)
                return 0;
        while ((k->n_occupied + 1) * 2 > n)
                n *= 2;

        k->slots = new0(Entry *, n);
        if (!k->slots) {
                k->slots = old;
                return -ENOMEM;
        }
        k->n_slots = n;
        k->n_occupied = k->n_tombstones = 0;
        for (size_t i = 0; i < n_old; i++)
                if (old[i] && old[i] != TOMBSTONE)
                        place(k, old[i]);
        free(old);
        return 0;
}

static void take_out(KeyIndex *k, Entry **slot) {
        *slot = TOMBSTONE;
        k->n_occupied--;
        k->n_tombstones++;
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

/* Room for one more change, made before the table is touched, so a change is never left unjournalled. */
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
                /* Same key, same slot: the new entry takes the removed one's place. */
                k->journal[k->n_journal++] = (Change){ .type = CHANGE_REPLACED, .entry = e, .old = *slot };
                *slot = e;
        } else {
                r = reserve_slot(k);
                if (r < 0) {
                        free(e);
                        return r;
                }
                place(k, e);
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

        /* Newest first, so each change finds the table as it left it. */
        while (k->n_journal > mark) {
                Change *c = &k->journal[--k->n_journal];

                switch (c->type) {
                case CHANGE_ADDED:
                        take_out(k, find_slot(k, c->entry->public.key));
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
                /* Still in the table unless a later add of the same key took its slot. */
                slot = find_slot(k, c->entry->public.key);
                if (slot && *slot == c->entry)
                        take_out(k, slot);
                free(c->entry);
        }
        k->n_journal = 0;
}
