/* SPDX-License-Identifier: MIT */
/* The in-memory idempotency key index: lookups, and the journal that keeps it equal to the table on disk
 * through savepoint and transaction rollbacks. */

#include "key-index.h"
#include "tests.h"

static KeyIndex *index_new(void) {
        KeyIndex *k = NULL;

        ASSERT_OK(key_index_new(&k));
        return k;
}

static void assert_maps(KeyIndex *k, const char *key, const char *hash, const char *id) {
        const KeyIndexEntry *e = key_index_get(k, key);

        ASSERT_NOT_NULL(e);
        ASSERT_STREQ(e->key, key);
        ASSERT_STREQ(e->request_hash, hash);
        ASSERT_STREQ(e->receipt_id, id);
}

static void test_add_then_get_and_unknown_key_is_null(void) {
        _cleanup_(key_index_freep) KeyIndex *k = index_new();

        ASSERT_OK(key_index_add(k, "key-1", "hash-1", "id-1"));
        ASSERT_OK(key_index_add(k, "key-2", "hash-2", "id-2"));
        key_index_commit(k);

        assert_maps(k, "key-1", "hash-1", "id-1");
        assert_maps(k, "key-2", "hash-2", "id-2");
        ASSERT_NULL(key_index_get(k, "key-3"));
        ASSERT_NULL(key_index_get(k, "key-"));
        ASSERT_EQ_U(key_index_size(k), 2);
}

static void test_add_of_a_present_key_is_refused_and_keeps_the_first(void) {
        _cleanup_(key_index_freep) KeyIndex *k = index_new();

        ASSERT_OK(key_index_add(k, "key-1", "hash-1", "id-1"));
        ASSERT_ERROR(key_index_add(k, "key-1", "hash-other", "id-other"), EEXIST);
        assert_maps(k, "key-1", "hash-1", "id-1");
        key_index_commit(k);
        ASSERT_ERROR(key_index_add(k, "key-1", "hash-other", "id-other"), EEXIST);
        ASSERT_EQ_U(key_index_size(k), 1);
}

static void test_remove_needs_the_receipt_the_key_maps_to(void) {
        _cleanup_(key_index_freep) KeyIndex *k = index_new();

        ASSERT_OK(key_index_add(k, "key-1", "hash-1", "id-1"));
        key_index_commit(k);

        ASSERT_ERROR(key_index_remove(k, "key-1", "id-2"), ENOENT);
        ASSERT_ERROR(key_index_remove(k, "key-9", "id-1"), ENOENT);
        assert_maps(k, "key-1", "hash-1", "id-1");

        ASSERT_OK(key_index_remove(k, "key-1", "id-1"));
        ASSERT_NULL(key_index_get(k, "key-1"));
        ASSERT_ERROR(key_index_remove(k, "key-1", "id-1"), ENOENT);
        key_index_commit(k);
        ASSERT_NULL(key_index_get(k, "key-1"));
        ASSERT_EQ_U(key_index_size(k), 0);
}

static void test_rollback_to_a_mark_undoes_only_what_came_after(void) {
        _cleanup_(key_index_freep) KeyIndex *k = index_new();
        size_t mark;

        ASSERT_OK(key_index_add(k, "committed", "h", "id-0"));
        key_index_commit(k);

        ASSERT_OK(key_index_add(k, "job-1", "h", "id-1"));
        mark = key_index_mark(k);
        ASSERT_OK(key_index_add(k, "job-2", "h", "id-2"));
        ASSERT_OK(key_index_remove(k, "committed", "id-0"));
        ASSERT_EQ_U(key_index_size(k), 2);

        key_index_rollback(k, mark); /* the second job's savepoint */
        assert_maps(k, "job-1", "h", "id-1");
        assert_maps(k, "committed", "h", "id-0");
        ASSERT_NULL(key_index_get(k, "job-2"));
        ASSERT_EQ_U(key_index_size(k), 2);

        key_index_rollback(k, 0); /* the whole transaction */
        ASSERT_NULL(key_index_get(k, "job-1"));
        assert_maps(k, "committed", "h", "id-0");
        ASSERT_EQ_U(key_index_size(k), 1);
}

static void test_commit_makes_changes_permanent(void) {
        _cleanup_(key_index_freep) KeyIndex *k = index_new();

        ASSERT_OK(key_index_add(k, "a", "h", "id-a"));
        ASSERT_OK(key_index_add(k, "b", "h", "id-b"));
        key_index_commit(k);
        ASSERT_OK(key_index_remove(k, "a", "id-a"));
        key_index_commit(k);

        key_index_rollback(k, 0); /* nothing left to undo */
        ASSERT_NULL(key_index_get(k, "a"));
        assert_maps(k, "b", "h", "id-b");
        ASSERT_EQ_U(key_index_size(k), 1);
}

/* Retention removes a key and a client submits it again in the same transaction. */
static void test_key_removed_and_added_again_rolls_back_to_the_first_receipt(void) {
        _cleanup_(key_index_freep) KeyIndex *k = index_new();

        ASSERT_OK(key_index_add(k, "key", "hash-old", "id-old"));
        key_index_commit(k);

        ASSERT_OK(key_index_remove(k, "key", "id-old"));
        ASSERT_OK(key_index_add(k, "key", "hash-new", "id-new"));
        assert_maps(k, "key", "hash-new", "id-new");
        ASSERT_OK(key_index_remove(k, "key", "id-new"));
        ASSERT_OK(key_index_add(k, "key", "hash-3", "id-3"));
        ASSERT_EQ_U(key_index_size(k), 1);

        key_index_rollback(k, 0);
        assert_maps(k, "key", "hash-old", "id-old");
        ASSERT_EQ_U(key_index_size(k), 1);

        /* The same again, committed this time. */
        ASSERT_OK(key_index_remove(k, "key", "id-old"));
        ASSERT_OK(key_index_add(k, "key", "hash-new", "id-new"));
        key_index_commit(k);
        assert_maps(k, "key", "hash-new", "id-new");
        key_index_rollback(k, 0);
        assert_maps(k, "key", "hash-new", "id-new");
}

static void test_removed_key_not_added_again_leaves_the_index_at_commit(void) {
        _cleanup_(key_index_freep) KeyIndex *k = index_new();

        ASSERT_OK(key_index_add(k, "key", "h", "id-1"));
        key_index_commit(k);
        ASSERT_OK(key_index_remove(k, "key", "id-1"));
        key_index_commit(k);
        ASSERT_NULL(key_index_get(k, "key"));
        /* Free to be used again, as a new key. */
        ASSERT_OK(key_index_add(k, "key", "h2", "id-2"));
        key_index_rollback(k, 0);
        ASSERT_NULL(key_index_get(k, "key"));
        ASSERT_OK(key_index_add(k, "key", "h3", "id-3"));
        key_index_commit(k);
        assert_maps(k, "key", "h3", "id-3");
}

/* Many keys through many transactions, each rolled back or committed, against a plain array model. */
static void test_random_transactions_match_a_model(void) {
        _cleanup_(key_index_freep) KeyIndex *k = index_new();
        enum { N_KEYS = 300 };
        int committed[N_KEYS], current[N_KEYS]; /* receipt number the key maps to, or -1 */
        unsigned seed = 12345;

        for (int i = 0; i < N_KEYS; i++)
                committed[i] = current[i] = -1;

        for (int txn = 0; txn < 400; txn++) {
                int ops = 1 + (int) (rand_r(&seed) % 20);

                for (int op = 0; op < ops; op++) {
                        int i = (int) (rand_r(&seed) % N_KEYS), n = txn * 100 + op;
                        char key[16], id[16];

                        snprintf(key, sizeof key, "k%d", i);
                        if (current[i] < 0) {
                                snprintf(id, sizeof id, "r%d", n);
                                ASSERT_OK(key_index_add(k, key, "h", id));
                                current[i] = n;
                        } else {
                                snprintf(id, sizeof id, "r%d", current[i]);
                                ASSERT_OK(key_index_remove(k, key, id));
                                current[i] = -1;
                        }
                }

                if (rand_r(&seed) % 3 == 0) {
                        key_index_rollback(k, 0);
                        memcpy(current, committed, sizeof current);
                } else {
                        key_index_commit(k);
                        memcpy(committed, current, sizeof current);
                }

                size_t live = 0;
                for (int i = 0; i < N_KEYS; i++) {
                        char key[16], id[16];
                        const KeyIndexEntry *e;

                        snprintf(key, sizeof key, "k%d", i);
                        e = key_index_get(k, key);
                        if (current[i] < 0) {
                                ASSERT_NULL(e);
                                continue;
                        }
                        live++;
                        snprintf(id, sizeof id, "r%d", current[i]);
                        ASSERT_NOT_NULL(e);
                        ASSERT_STREQ(e->receipt_id, id);
                }
                ASSERT_EQ_U(key_index_size(k), live);
        }
}

/* Tens of thousands of keys: the table grows, and keys removed and added again leave it whole. */
static void test_many_keys_through_growth_and_removals(void) {
        _cleanup_(key_index_freep) KeyIndex *k = index_new();
        enum { N = 20000 };
        char key[32], id[32];

        for (int i = 0; i < N; i++) {
                snprintf(key, sizeof key, "%08x-key-%d", (unsigned) i * 2654435761U, i);
                snprintf(id, sizeof id, "id-%d", i);
                ASSERT_OK(key_index_add(k, key, "h", id));
                if (i % 1000 == 999)
                        key_index_commit(k);
        }
        key_index_commit(k);
        ASSERT_EQ_U(key_index_size(k), N);

        /* Every other key goes, in rounds, then half of those come back with new receipts. */
        for (int round = 0; round < 4; round++) {
                for (int i = round; i < N; i += 8) {
                        snprintf(key, sizeof key, "%08x-key-%d", (unsigned) i * 2654435761U, i);
                        snprintf(id, sizeof id, "id-%d", i);
                        ASSERT_OK(key_index_remove(k, key, id));
                }
                key_index_commit(k);
        }
        ASSERT_EQ_U(key_index_size(k), N / 2);
        for (int i = 0; i < N; i += 8) {
                snprintf(key, sizeof key, "%08x-key-%d", (unsigned) i * 2654435761U, i);
                ASSERT_OK(key_index_add(k, key, "h2", "again"));
        }
        key_index_commit(k);

        for (int i = 0; i < N; i++) {
                const KeyIndexEntry *e;

                snprintf(key, sizeof key, "%08x-key-%d", (unsigned) i * 2654435761U, i);
                snprintf(id, sizeof id, "id-%d", i);
                e = key_index_get(k, key);
                if (i % 8 == 0)
                        ASSERT_STREQ(e ? e->receipt_id : NULL, "again");
                else if (i % 8 < 4)
                        ASSERT_NULL(e);
                else
                        ASSERT_STREQ(e ? e->receipt_id : NULL, id);
        }
        ASSERT_EQ_U(key_index_size(k), N / 2 + N / 8);
}

/* Freed in the middle of a transaction (the store closing after a failed commit): no leak, no double
 * free (ASan). */
static void test_free_with_an_open_transaction(void) {
        KeyIndex *k = index_new();

        ASSERT_OK(key_index_add(k, "a", "h", "id-a"));
        key_index_commit(k);
        ASSERT_OK(key_index_remove(k, "a", "id-a"));
        ASSERT_OK(key_index_add(k, "a", "h", "id-a2"));
        ASSERT_OK(key_index_add(k, "b", "h", "id-b"));
        key_index_free(k);
}

int main(void) {
        TEST_RUN(test_add_then_get_and_unknown_key_is_null);
        TEST_RUN(test_add_of_a_present_key_is_refused_and_keeps_the_first);
        TEST_RUN(test_remove_needs_the_receipt_the_key_maps_to);
        TEST_RUN(test_rollback_to_a_mark_undoes_only_what_came_after);
        TEST_RUN(test_commit_makes_changes_permanent);
        TEST_RUN(test_key_removed_and_added_again_rolls_back_to_the_first_receipt);
        TEST_RUN(test_removed_key_not_added_again_leaves_the_index_at_commit);
        TEST_RUN(test_random_transactions_match_a_model);
        TEST_RUN(test_many_keys_through_growth_and_removals);
        TEST_RUN(test_free_with_an_open_transaction);
        return 0;
}
