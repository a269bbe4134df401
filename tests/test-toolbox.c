/* SPDX-License-Identifier: MIT */
/* src/shared's lists, string tables and secret wiping. */

#include "list.h"
#include "memory-util.h"
#include "string-table.h"
#include "tests.h"

typedef struct Item {
        int value;
        LIST_FIELDS(struct Item, queue);
        LIST_FIELDS(struct Item, other);
} Item;

/* The values of a list in order, checking the back links on the way. */
static void assert_queue(Item *head, Item *tail, const int *values, size_t n) {
        size_t k = 0;
        Item *prev = NULL;

        LIST_FOREACH(queue, i, head) {
                ASSERT_TRUE(k < n);
                ASSERT_EQ(i->value, values[k]);
                ASSERT_TRUE(i->queue_prev == prev);
                prev = i;
                k++;
        }
        ASSERT_EQ_U(k, n);
        ASSERT_TRUE(tail == prev);
}

static void test_queue_append_pop_remove(void) {
        Item items[5] = {};
        Item *head = NULL, *tail = NULL;

        for (int i = 0; i < 5; i++) {
                items[i].value = i;
                ASSERT_FALSE(LIST_IS_LINKED(queue, head, &items[i]));
                LIST_APPEND(queue, head, tail, &items[i]);
                ASSERT_TRUE(LIST_IS_LINKED(queue, head, &items[i]));
        }
        assert_queue(head, tail, (const int[]) { 0, 1, 2, 3, 4 }, 5);

        LIST_REMOVE_QUEUED(queue, head, tail, &items[2]); /* middle */
        assert_queue(head, tail, (const int[]) { 0, 1, 3, 4 }, 4);
        LIST_REMOVE_QUEUED(queue, head, tail, &items[4]); /* tail */
        assert_queue(head, tail, (const int[]) { 0, 1, 3 }, 3);
        ASSERT_TRUE(LIST_POP(queue, head, tail) == &items[0]); /* head */
        assert_queue(head, tail, (const int[]) { 1, 3 }, 2);
        ASSERT_FALSE(LIST_IS_LINKED(queue, head, &items[0]));

        ASSERT_TRUE(LIST_POP(queue, head, tail) == &items[1]);
        ASSERT_TRUE(LIST_POP(queue, head, tail) == &items[3]);
        ASSERT_NULL(LIST_POP(queue, head, tail));
        ASSERT_NULL(head);
        ASSERT_NULL(tail);
}

static void test_list_prepend_foreach_safe(void) {
        Item items[4] = {};
        Item *head = NULL;
        int n = 0;

        for (int i = 0; i < 4; i++) {
                items[i].value = i;
                LIST_PREPEND(other, head, &items[i]);
        }
        /* Each item is on two lists at once without the one touching the other. */
        ASSERT_NULL(items[0].queue_next);

        LIST_FOREACH_SAFE(other, i, head) {
                ASSERT_EQ(i->value, 3 - n);
                if (i->value % 2 == 0)
                        LIST_REMOVE(other, head, i);
                n++;
        }
        ASSERT_EQ(n, 4);
        ASSERT_TRUE(head == &items[3]);
        ASSERT_TRUE(items[3].other_next == &items[1]);
        ASSERT_NULL(items[1].other_next);
        LIST_REMOVE(other, head, &items[3]);
        LIST_REMOVE(other, head, &items[1]);
        ASSERT_NULL(head);
}

static void test_queue_join(void) {
        Item items[4] = {};
        Item *head = NULL, *tail = NULL, *ohead = NULL, *otail = NULL;

        for (int i = 0; i < 4; i++)
                items[i].value = i;
        LIST_JOIN(queue, head, tail, ohead, otail); /* both empty */
        ASSERT_NULL(head);

        LIST_APPEND(queue, ohead, otail, &items[0]);
        LIST_APPEND(queue, ohead, otail, &items[1]);
        LIST_JOIN(queue, head, tail, ohead, otail); /* onto an empty one */
        assert_queue(head, tail, (const int[]) { 0, 1 }, 2);
        ASSERT_NULL(ohead);
        ASSERT_NULL(otail);

        LIST_APPEND(queue, ohead, otail, &items[2]);
        LIST_APPEND(queue, ohead, otail, &items[3]);
        LIST_JOIN(queue, head, tail, ohead, otail);
        assert_queue(head, tail, (const int[]) { 0, 1, 2, 3 }, 4);
}

typedef enum Colour {
        COLOUR_RED,
        COLOUR_GREEN,
        COLOUR_BLUE,
        _COLOUR_MAX,
        _COLOUR_INVALID = -EINVAL,
} Colour;

static const char *const colour_table[_COLOUR_MAX] = {
        [COLOUR_RED] = "red",
        [COLOUR_GREEN] = "green",
        [COLOUR_BLUE] = "blue",
};
DEFINE_PRIVATE_STRING_TABLE_LOOKUP(colour, Colour);

static void test_string_table(void) {
        for (Colour c = 0; c < _COLOUR_MAX; c++)
                ASSERT_EQ(colour_from_string(colour_to_string(c)), c);
        ASSERT_STREQ(colour_to_string(COLOUR_GREEN), "green");
        ASSERT_NULL(colour_to_string(_COLOUR_MAX));
        ASSERT_NULL(colour_to_string(_COLOUR_INVALID));
        ASSERT_EQ(colour_from_string("purple"), _COLOUR_INVALID);
        ASSERT_EQ(colour_from_string("Red"), _COLOUR_INVALID);
        ASSERT_EQ(colour_from_string(NULL), _COLOUR_INVALID);
}

static void test_erase(void) {
        char *s = strdup("secret-token");
        char buf[8] = "abcdefg";

        ASSERT_NOT_NULL(s);
        ASSERT_NULL(erase_and_free(s));
        ASSERT_NULL(erase_and_free(NULL));
        {
                _cleanup_(erase_and_freep) char *t = strdup("another");
                ASSERT_NOT_NULL(t);
        }
        erase(buf, sizeof buf);
        for (size_t i = 0; i < sizeof buf; i++)
                ASSERT_EQ(buf[i], 0);
}

int main(void) {
        TEST_RUN(test_queue_append_pop_remove);
        TEST_RUN(test_list_prepend_foreach_safe);
        TEST_RUN(test_queue_join);
        TEST_RUN(test_string_table);
        TEST_RUN(test_erase);
        return 0;
}
