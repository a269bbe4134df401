/* SPDX-License-Identifier: MIT */
#pragma once

/* The buffer's idempotency keys in memory, for the writer's lookups.
 *
 * On disk the keys live in idempotency_keys, ordered by receipt id, so a commit appends to that table
 * instead of writing a leaf page of an index keyed by the client's random key for every receipt. The
 * lookup by key is this index, loaded from the table when the store opens and changed by the writer in the
 * same transactions as the table. Every change is journalled: a savepoint or a whole transaction that is
 * rolled back takes its changes back, so the index always equals the table as committed plus the open
 * transaction. Writer thread only. */

#include <stddef.h>

#include "macro.h"

typedef struct KeyIndex KeyIndex;

typedef struct KeyIndexEntry {
        const char *key;
        const char *request_hash;
        const char *receipt_id;
} KeyIndexEntry;

int key_index_new(KeyIndex **ret);
KeyIndex *key_index_free(KeyIndex *k);
DEFINE_TRIVIAL_CLEANUP_FUNC(KeyIndex *, key_index_free);

/* NULL when the key is not there. The entry is valid until the next change of the index. */
const KeyIndexEntry *key_index_get(KeyIndex *k, const char *key);

/* -EEXIST when the key is there already (whatever it maps to); -ENOMEM. */
int key_index_add(KeyIndex *k, const char *key, const char *request_hash, const char *receipt_id);

/* Removes the key if it maps to receipt_id; -ENOENT otherwise. */
int key_index_remove(KeyIndex *k, const char *key, const char *receipt_id);

size_t key_index_size(KeyIndex *k);

/* The journal: a mark to roll back to (0 is the start of the transaction), the rollback, and the commit,
 * which makes every change since the last commit permanent. */
size_t key_index_mark(KeyIndex *k);
void key_index_rollback(KeyIndex *k, size_t mark);
void key_index_commit(KeyIndex *k);
