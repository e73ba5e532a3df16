/* events.c — pick the event back-end by name (--events). */
#include <string.h>

#include "events.h"

const struct ev_backend *ev_backend_named(const char *name)
{
	static const struct ev_backend *const all[] = {&ev_select, &ev_poll, &ev_epoll};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (strcmp(all[i]->name, name) == 0)
			return all[i];
	return NULL;
}
