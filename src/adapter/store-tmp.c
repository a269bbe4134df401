#include "store.h"
int store_set_print_rejected(Store *s, const char *id, const char *reason, StoreDoneCallback cb, void *userdata) { return -ENOSYS; }
int store_retry_print(Store *s, const char *id, const char *who, StoreGetCallback cb, void *userdata) { return -ENOSYS; }
int store_cancel_receipt(Store *s, const char *id, const char *note, const char *who, StoreGetCallback cb, void *userdata) { return -ENOSYS; }
int store_resolve_receipt(Store *s, const char *ref, StoreGetCallback cb, void *userdata) { return -ENOSYS; }
int store_list_print_rejected(Store *s, unsigned limit, StoreListCallback cb, void *userdata) { return -ENOSYS; }
