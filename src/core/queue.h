/* Intrusive circular doubly-linked list. A node that is in no list has
 * next == NULL (so a zeroed handle is "not queued"); removal is O(1) and
 * needs no list head, which lets a handle leave whatever list holds it. */
#ifndef IOMUX_QUEUE_H
#define IOMUX_QUEUE_H

#include <stddef.h>

#include "iomux.h"

#define iomux__container_of(ptr, type, member) \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

static inline void iomux__q_init(iomux__node *head) {
    head->next = head->prev = head;
}

static inline int iomux__q_empty(const iomux__node *head) {
    return head->next == head;
}

static inline int iomux__q_linked(const iomux__node *n) {
    return n->next != NULL;
}

static inline void iomux__q_push(iomux__node *head, iomux__node *n) {
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
}

static inline void iomux__q_remove(iomux__node *n) {
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = NULL;
}

static inline iomux__node *iomux__q_pop(iomux__node *head) {
    iomux__node *n = head->next;
    if (n == head) return NULL;
    iomux__q_remove(n);
    return n;
}

/* Moves every node of `from` to the end of `to`; `from` becomes empty. */
static inline void iomux__q_splice(iomux__node *from, iomux__node *to) {
    if (iomux__q_empty(from)) return;
    from->next->prev = to->prev;
    to->prev->next = from->next;
    from->prev->next = to;
    to->prev = from->prev;
    iomux__q_init(from);
}

/* Moves every node of `from` to the front of `to`; `from` becomes empty. */
static inline void iomux__q_splice_front(iomux__node *from, iomux__node *to) {
    if (iomux__q_empty(from)) return;
    from->prev->next = to->next;
    to->next->prev = from->prev;
    from->next->prev = to;
    to->next = from->next;
    iomux__q_init(from);
}

#endif
