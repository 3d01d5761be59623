#pragma once

/*
 * Intrusive circular doubly-linked list.
 *
 * A List is embedded in the objects it links. The head and every node are the
 * same type; an unlinked node points at itself (LIST_INIT), so unlinking
 * twice is harmless and list_is_linked() is a pointer comparison.
 */

#include <stdbool.h>
#include <stddef.h>

typedef struct List {
        struct List *next;
        struct List *prev;
} List;

#define LIST_INIT(name) { .next = &(name), .prev = &(name) }

static inline void list_init(List *l) {
        l->next = l->prev = l;
}

static inline bool list_is_empty(const List *head) {
        return head->next == head;
}

static inline bool list_is_linked(const List *node) {
        return node->next != node;
}

static inline void list_link_before(List *where, List *node) {
        node->prev = where->prev;
        node->next = where;
        where->prev->next = node;
        where->prev = node;
}

/* Appends @node at the tail of @head. */
static inline void list_append(List *head, List *node) {
        list_link_before(head, node);
}

/* Unlinks @node and leaves it self-pointing; no-op when not linked. */
static inline void list_unlink(List *node) {
        node->prev->next = node->next;
        node->next->prev = node->prev;
        list_init(node);
}

/* Moves all nodes of @from to the tail of @to, leaving @from empty. */
static inline void list_splice(List *to, List *from) {
        if (list_is_empty(from))
                return;
        from->next->prev = to->prev;
        to->prev->next = from->next;
        from->prev->next = to;
        to->prev = from->prev;
        list_init(from);
}

#define list_entry(ptr, type, member) \
        ((type *)((char *)(ptr) - offsetof(type, member)))

#define list_first_entry(head, type, member) \
        (list_is_empty(head) ? NULL : list_entry((head)->next, type, member))

/* Iteration that tolerates unlinking the current entry. */
#define list_for_each_entry_safe(pos, head, member)                             \
        for (List *_n = (head)->next, *_nn = _n->next;                          \
             _n != (head) && ((pos) = list_entry(_n, __typeof__(*(pos)), member), 1); \
             _n = _nn, _nn = _n->next)

/*
 * A loop that runs to the end leaves @pos at the last entry, not at NULL:
 * search with a function that returns from inside the loop.
 */
#define list_for_each_entry(pos, head, member)                                  \
        for (List *_n = (head)->next;                                           \
             _n != (head) && ((pos) = list_entry(_n, __typeof__(*(pos)), member), 1); \
             _n = _n->next)
