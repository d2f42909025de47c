/* list.h: intrusive doubly linked list (header only). The node lives inside
 * each element, so inserting never allocates; unlinking re-initialises the
 * node, so core_list_is_linked() tells whether an element is on a list.
 * Not thread-safe; callers serialise. */
#ifndef CORE_LIST_H
#define CORE_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct core_list_s {
  struct core_list_s* next;
  struct core_list_s* prev;
} core_list_t;

#define CORE_CONTAINER_OF(ptr, type, field)                                    \
  ((type*) ((char*) (ptr) -offsetof(type, field)))

/* Makes `l` an empty list head or an unlinked node. */
static inline void core_list_init(core_list_t* l) {
  l->next = l;
  l->prev = l;
}

static inline bool core_list_is_empty(const core_list_t* head) {
  return head->next == head;
}

/* True when `node` is on some list (it was inserted and not removed). */
static inline bool core_list_is_linked(const core_list_t* node) {
  return node->next != node;
}

/* Appends `node` (unlinked) at the tail of `head`. */
static inline void core_list_push_back(core_list_t* head, core_list_t* node) {
  node->prev = head->prev;
  node->next = head;
  head->prev->next = node;
  head->prev = node;
}

/* Unlinks `node` and re-initialises it; a no-op on an unlinked node. */
static inline void core_list_remove(core_list_t* node) {
  node->prev->next = node->next;
  node->next->prev = node->prev;
  core_list_init(node);
}

/* First node or NULL when empty. */
static inline core_list_t* core_list_front(const core_list_t* head) {
  return core_list_is_empty(head) ? NULL : head->next;
}

/* Iterates nodes; the body may unlink `it` (the next node is saved). */
#define CORE_LIST_FOREACH_SAFE(it, tmp, head)                                  \
  for ((it) = (head)->next, (tmp) = (it)->next; (it) != (head);                \
       (it) = (tmp), (tmp) = (it)->next)

#endif
