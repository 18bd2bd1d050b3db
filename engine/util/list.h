/*
 * Intrusive doubly linked lists, written once. The links live in the
 * elements and the ends in their owner, under whatever names the two
 * structs give them; a macro writes the typed functions for one list:
 *
 *   LIST_FUNCTIONS(name, owner type, element type, head, tail, prev, next)
 *     name_push_front, name_push_back, name_unlink
 *   HEAD_LIST_FUNCTIONS(name, owner type, element type, head, prev, next)
 *     name_push_front, name_unlink (a list that keeps no tail)
 *
 * Unlinking clears the element's links. An element is on at most one list
 * per pair of link fields.
 */
#ifndef LR_LIST_H
#define LR_LIST_H

#include <stddef.h>

#define HEAD_LIST_FUNCTIONS(name, owner_t, elem_t, head, prev, next)                  \
	__attribute__((unused)) static inline void name##_push_front(owner_t *o, elem_t *e) \
	{                                                                                \
		e->prev = NULL;                                                          \
		e->next = o->head;                                                       \
		if (o->head)                                                             \
			o->head->prev = e;                                               \
		o->head = e;                                                             \
	}                                                                                \
	__attribute__((unused)) static inline void name##_unlink(owner_t *o, elem_t *e)     \
	{                                                                                \
		if (e->prev)                                                             \
			e->prev->next = e->next;                                         \
		else                                                                     \
			o->head = e->next;                                               \
		if (e->next)                                                             \
			e->next->prev = e->prev;                                         \
		e->prev = e->next = NULL;                                                \
	}

#define LIST_FUNCTIONS(name, owner_t, elem_t, head, tail, prev, next)                  \
	__attribute__((unused)) static inline void name##_push_front(owner_t *o, elem_t *e) \
	{                                                                                \
		e->prev = NULL;                                                          \
		e->next = o->head;                                                       \
		if (o->head)                                                             \
			o->head->prev = e;                                               \
		else                                                                     \
			o->tail = e;                                                     \
		o->head = e;                                                             \
	}                                                                                \
	__attribute__((unused)) static inline void name##_push_back(owner_t *o, elem_t *e)  \
	{                                                                                \
		e->next = NULL;                                                          \
		e->prev = o->tail;                                                       \
		if (o->tail)                                                             \
			o->tail->next = e;                                               \
		else                                                                     \
			o->head = e;                                                     \
		o->tail = e;                                                             \
	}                                                                                \
	__attribute__((unused)) static inline void name##_unlink(owner_t *o, elem_t *e)     \
	{                                                                                \
		if (e->prev)                                                             \
			e->prev->next = e->next;                                         \
		else                                                                     \
			o->head = e->next;                                               \
		if (e->next)                                                             \
			e->next->prev = e->prev;                                         \
		else                                                                     \
			o->tail = e->prev;                                               \
		e->prev = e->next = NULL;                                                \
	}

#endif
