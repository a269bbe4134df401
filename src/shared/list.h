/* SPDX-License-Identifier: MIT */
#pragma once

/* Intrusive doubly linked lists, after systemd's list.h. An item carries the links of each list it can be on,
 * declared with LIST_FIELDS(Type, name): the fields name_next and name_prev. A list is a head pointer, and for a
 * queue also a tail pointer, both owned by the caller; an item not on the list has both links NULL. Every
 * operation is O(1) but LIST_FOREACH. Header-only; knows nothing of the daemon. */

#include <assert.h>
#include <stddef.h>

#define LIST_FIELDS(t, name) t *name##_next, *name##_prev

/* Whether an item is linked: either link set, or it is the head. */
#define LIST_IS_LINKED(name, head, item) ((item)->name##_prev || (item)->name##_next || (head) == (item))

/* Puts an unlinked item first. */
#define LIST_PREPEND(name, head, item)                                                                   \
        do {                                                                                             \
                typeof(*(head)) **_head_ = &(head), *_item_ = (item);                                    \
                assert(_item_ && !_item_->name##_next && !_item_->name##_prev);                          \
                _item_->name##_next = *_head_;                                                           \
                if (*_head_)                                                                             \
                        (*_head_)->name##_prev = _item_;                                                 \
                *_head_ = _item_;                                                                        \
        } while (false)

/* Takes a linked item off a list without a tail. */
#define LIST_REMOVE(name, head, item)                                                                    \
        do {                                                                                             \
                typeof(*(head)) **_head_ = &(head), *_item_ = (item);                                    \
                assert(_item_);                                                                          \
                if (_item_->name##_next)                                                                 \
                        _item_->name##_next->name##_prev = _item_->name##_prev;                          \
                if (_item_->name##_prev)                                                                 \
                        _item_->name##_prev->name##_next = _item_->name##_next;                          \
                else {                                                                                   \
                        assert(*_head_ == _item_);                                                       \
                        *_head_ = _item_->name##_next;                                                   \
                }                                                                                        \
                _item_->name##_next = _item_->name##_prev = NULL;                                        \
        } while (false)

/* Queues: a list with a tail pointer as well. Puts an unlinked item last. */
#define LIST_APPEND(name, head, tail, item)                                                              \
        do {                                                                                             \
                typeof(*(head)) **_head_ = &(head), **_tail_ = &(tail), *_item_ = (item);                \
                assert(_item_ && !_item_->name##_next && !_item_->name##_prev);                          \
                assert(!*_tail_ == !*_head_);                                                            \
                _item_->name##_prev = *_tail_;                                                           \
                if (*_tail_)                                                                             \
                        (*_tail_)->name##_next = _item_;                                                 \
                else                                                                                     \
                        *_head_ = _item_;                                                                \
                *_tail_ = _item_;                                                                        \
        } while (false)

/* Takes a linked item off a queue. */
#define LIST_REMOVE_QUEUED(name, head, tail, item)                                                       \
        do {                                                                                             \
                typeof(*(head)) **_tail_ = &(tail), *_it_ = (item);                                      \
                if (*_tail_ == _it_)                                                                     \
                        *_tail_ = _it_->name##_prev;                                                     \
                LIST_REMOVE(name, head, _it_);                                                           \
        } while (false)

/* Takes the first item off a queue and returns it, or NULL when it is empty. */
#define LIST_POP(name, head, tail)                                                                       \
        ({                                                                                               \
                typeof(*(head)) *_first_ = (head);                                                       \
                if (_first_)                                                                             \
                        LIST_REMOVE_QUEUED(name, head, tail, _first_);                                   \
                _first_;                                                                                 \
        })

/* Moves every item of the queue (ohead, otail) to the end of (head, tail), in order; the first is left
 * empty. */
#define LIST_JOIN(name, head, tail, ohead, otail)                                                        \
        do {                                                                                             \
                typeof(*(head)) **_h_ = &(head), **_t_ = &(tail), **_oh_ = &(ohead), **_ot_ = &(otail); \
                if (*_oh_) {                                                                             \
                        if (*_t_) {                                                                      \
                                (*_t_)->name##_next = *_oh_;                                             \
                                (*_oh_)->name##_prev = *_t_;                                             \
                        } else                                                                           \
                                *_h_ = *_oh_;                                                            \
                        *_t_ = *_ot_;                                                                    \
                        *_oh_ = *_ot_ = NULL;                                                            \
                }                                                                                        \
        } while (false)

#define LIST_FOREACH(name, i, head) for (typeof(*(head)) *i = (head); i; i = i->name##_next)

/* Safe against the removal of i while the loop body runs. */
#define LIST_FOREACH_SAFE(name, i, head)                                                                 \
        for (typeof(*(head)) *i = (head), *_n_##i = i ? i->name##_next : NULL; i;                        \
             i = _n_##i, _n_##i = i ? i->name##_next : NULL)
