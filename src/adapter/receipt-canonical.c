/* SPDX-License-Identifier: MIT */
/* A parsed receipt written out: as JSON (receipt_to_json()) and as the canonical text the store keeps, the
 * OFD receives and idempotency compares, and that text's SHA-256. */

#include <openssl/evp.h>
#include <threads.h>

#include "receipt-internal.h"

static int json_add_string(json_object *o, const char *key, const char *s) {
        return json_add(o, key, json_object_new_string(s));
}

static int json_add_int(json_object *o, const char *key, int64_t i) {
        return json_add(o, key, json_object_new_int64(i));
}

static int json_add_decimal(json_object *o, const char *key, int64_t v, unsigned scale) {
        return json_add_string(o, key, MONEY_FORMAT(v, scale));
}

static int json_add_date(json_object *o, const char *key, unsigned date) {
        return json_add_string(o, key, DATE_FORMAT(date));
}

/* What AS_GIVEN leaves out: what the options filled in. */
static bool show_taxation(const Receipt *r, ReceiptCanonicalFlags flags) {
        return r->taxation_given || !(flags & RECEIPT_CANONICAL_AS_GIVEN);
}

static bool show_cashier(const Receipt *r, ReceiptCanonicalFlags flags) {
        return r->cashier_name && (r->cashier_given || !(flags & RECEIPT_CANONICAL_AS_GIVEN));
}

static int item_to_json(const ReceiptItem *item, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        int r;

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;

        if ((r = json_add_string(o, "name", item->name)) < 0 ||
            (r = json_add_decimal(o, "price", item->price, MONEY_SCALE_KOPECKS)) < 0 ||
            (r = json_add_decimal(o, "quantity", item->quantity, MONEY_SCALE_QUANTITY)) < 0 ||
            (r = json_add_decimal(o, "total", item->total, MONEY_SCALE_KOPECKS)) < 0)
                return r;
        if (item->discount > 0 &&
            (r = json_add_decimal(o, "discount", item->discount, MONEY_SCALE_KOPECKS)) < 0)
                return r;
        if ((r = json_add_string(o, "vat", item->vat->name)) < 0 ||
            (r = json_add_int(o, "vat_tag1199", item->vat->tag1199)) < 0 ||
            (r = json_add_decimal(o, "vat_amount", item->vat_amount, MONEY_SCALE_KOPECKS)) < 0 ||
            (r = json_add_string(o, "payment_method", payment_method_to_string(item->payment_method))) < 0 ||
            (r = json_add_int(o, "payment_method_tag1214", item->payment_method)) < 0 ||
            (r = json_add_string(o, "payment_object", payment_object_to_string(item->payment_object))) < 0 ||
            (r = json_add_int(o, "payment_object_tag1212", item->payment_object)) < 0 ||
            (r = json_add_string(o, "measure", measure_to_string(item->measure))) < 0 ||
            (r = json_add_int(o, "measure_tag2108", item->measure)) < 0)
                return r;
        if (item->mark_code) {
                r = json_add_string(o, "mark_code", item->mark_code);
                if (r < 0)
                        return r;
        }

        *ret = TAKE_PTR(o);
        return 0;
}

static int payment_to_json(const ReceiptPayment *payment, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        int r;

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;

        if ((r = json_add_string(o, "type", payment_type_to_string(payment->type))) < 0 ||
            (r = json_add_decimal(o, "amount", payment->amount, MONEY_SCALE_KOPECKS)) < 0 ||
            (r = json_add_int(o, "amount_tag", payment->type)) < 0)
                return r;

        *ret = TAKE_PTR(o);
        return 0;
}

static int vat_sum_to_json(const ReceiptVatSum *sum, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        int r;

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;

        if ((r = json_add_string(o, "vat", sum->vat->name)) < 0 ||
            (r = json_add_int(o, "tag1199", sum->vat->tag1199)) < 0 ||
            (r = json_add_decimal(o, "base", sum->base, MONEY_SCALE_KOPECKS)) < 0 ||
            (r = json_add_decimal(o, "amount", sum->amount, MONEY_SCALE_KOPECKS)) < 0)
                return r;

        *ret = TAKE_PTR(o);
        return 0;
}

/* Appends what to_json() makes of each of n elements of size bytes from a to a new array at o[key]. */
static int json_add_array(json_object *o, const char *key, const void *a, size_t n, size_t size,
                          int (*to_json)(const void *element, json_object **ret)) {
        _cleanup_(json_object_putp) json_object *array = json_object_new_array();
        int k;

        if (!array)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_object *e = NULL;

                k = to_json((const uint8_t *) a + i * size, &e);
                if (k < 0)
                        return k;
                if (json_object_array_add(array, e) < 0) {
                        json_object_put(e);
                        return -ENOMEM;
                }
        }
        return json_add(o, key, TAKE_PTR(array));
}

static int item_to_json_any(const void *e, json_object **ret) {
        return item_to_json(e, ret);
}

static int payment_to_json_any(const void *e, json_object **ret) {
        return payment_to_json(e, ret);
}

static int vat_sum_to_json_any(const void *e, json_object **ret) {
        return vat_sum_to_json(e, ret);
}

int receipt_to_json_with(const Receipt *r, ReceiptCanonicalFlags flags, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        int k;

        assert(r);
        assert(ret);

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;

        if ((k = json_add_string(o, "pos_id", r->pos_id)) < 0 ||
            (k = json_add_string(o, "type", receipt_type_to_string(r->type))) < 0 ||
            (k = json_add_int(o, "type_tag1054", receipt_type_to_ffd(r->type))) < 0)
                return k;
        if (show_taxation(r, flags) &&
            ((k = json_add_string(o, "taxation", taxation_to_string(r->taxation))) < 0 ||
             (k = json_add_int(o, "taxation_tag1055", r->taxation)) < 0))
                return k;

        if (show_cashier(r, flags)) {
                _cleanup_(json_object_putp) json_object *cashier = json_object_new_object();

                if (!cashier)
                        return -ENOMEM;
                if ((k = json_add_string(cashier, "name", r->cashier_name)) < 0)
                        return k;
                if (r->cashier_inn && (k = json_add_string(cashier, "inn", r->cashier_inn)) < 0)
                        return k;
                if ((k = json_add(o, "cashier", TAKE_PTR(cashier))) < 0)
                        return k;
        }

        if (r->has_correction) {
                _cleanup_(json_object_putp) json_object *correction = json_object_new_object();

                if (!correction)
                        return -ENOMEM;
                if ((k = json_add_string(correction, "type",
                                         correction_type_to_string(r->correction.type))) < 0 ||
                    (k = json_add_int(correction, "type_tag1173", r->correction.type)) < 0 ||
                    (k = json_add_date(correction, "date", r->correction.date)) < 0)
                        return k;
                if (r->correction.order_number &&
                    (k = json_add_string(correction, "order_number", r->correction.order_number)) < 0)
                        return k;
                if ((k = json_add(o, "correction", TAKE_PTR(correction))) < 0)
                        return k;
        }

        if (r->original && (k = json_add_string(o, "original", r->original)) < 0)
                return k;
        if (r->original_date > 0 && (k = json_add_date(o, "original_date", r->original_date)) < 0)
                return k;

        if ((k = json_add_array(o, "items", r->items, r->n_items, sizeof *r->items, item_to_json_any)) < 0 ||
            (k = json_add_array(o, "payments", r->payments, r->n_payments, sizeof *r->payments,
                                payment_to_json_any)) < 0 ||
            (k = json_add_decimal(o, "total", r->total, MONEY_SCALE_KOPECKS)) < 0)
                return k;
        if (r->change > 0 && (k = json_add_decimal(o, "change", r->change, MONEY_SCALE_KOPECKS)) < 0)
                return k;
        if ((k = json_add_array(o, "vat_amounts", r->vat_sums, r->n_vat_sums, sizeof *r->vat_sums,
                                vat_sum_to_json_any)) < 0)
                return k;

        if (r->customer_email || r->customer_phone) {
                _cleanup_(json_object_putp) json_object *customer = json_object_new_object();

                if (!customer)
                        return -ENOMEM;
                if (r->customer_email && (k = json_add_string(customer, "email", r->customer_email)) < 0)
                        return k;
                if (r->customer_phone && (k = json_add_string(customer, "phone", r->customer_phone)) < 0)
                        return k;
                k = json_add(o, "customer", TAKE_PTR(customer));
                if (k < 0)
                        return k;
        }

        *ret = TAKE_PTR(o);
        return 0;
}

int receipt_to_json(const Receipt *r, json_object **ret) {
        return receipt_to_json_with(r, 0, ret);
}

/* The canonical text, written straight into one buffer instead of through a json-c tree: building the tree
 * (an allocation and a hash insertion per field) and serialising it was a fifth of the loop thread's time
 * at 64 connections. The bytes must stay exactly what json_object_to_json_string_ext() with
 * JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE wrote for receipt_to_json()'s tree: stored
 * receipts are compared by the fingerprint of this text. test-receipt pins examples of it. */

/* A JSON string as json-c escapes it: '"', '\\' and the controls with a short form as \" \\ \b \f \n \r
 * \t, every other byte below 0x20 as \u00xx with lower-case hex; '/' (NOSLASHESCAPE), DEL and everything
 * from 0x80 up (UTF-8) as they are. */
static void text_append_string(Text *t, const char *s) {
        static const char hex[] = "0123456789abcdef";
        const char *run = s;

        text_append_literal(t, "\"");
        for (; *s; s++) {
                uint8_t c = (uint8_t) *s;
                char esc[6] = { '\\' };
                size_t n = 2;

                if (c >= 0x20 && c != '"' && c != '\\')
                        continue;

                switch (c) {
                case '"':
                case '\\':
                        esc[1] = (char) c;
                        break;
                case '\b':
                        esc[1] = 'b';
                        break;
                case '\f':
                        esc[1] = 'f';
                        break;
                case '\n':
                        esc[1] = 'n';
                        break;
                case '\r':
                        esc[1] = 'r';
                        break;
                case '\t':
                        esc[1] = 't';
                        break;
                default:
                        memcpy(esc + 1, "u00", 3);
                        esc[4] = hex[c >> 4];
                        esc[5] = hex[c & 0xf];
                        n = 6;
                }
                text_append(t, run, (size_t) (s - run));
                text_append(t, esc, n);
                run = s + 1;
        }
        text_append(t, run, (size_t) (s - run));
        text_append_literal(t, "\"");
}

/* Names from the tables and money_format()'s decimals: nothing in them needs escaping. */
static void text_append_name(Text *t, const char *s) {
        assert(s);
        text_append_literal(t, "\"");
        text_append(t, s, strlen(s));
        text_append_literal(t, "\"");
}

/* money_format() with scale 0 writes what json-c's "%" PRId64 does, without printf's machinery. */
static void text_append_int(Text *t, int64_t v) {
        char buf[MONEY_FORMAT_MAX];
        const char *s = money_format(buf, sizeof buf, v, 0);

        assert(s);
        text_append(t, s, strlen(s));
}

/* Amounts are JSON strings: "1500.00". */
static void text_append_decimal(Text *t, int64_t v, unsigned scale) {
        text_append_name(t, money_format((char[MONEY_FORMAT_MAX]){}, MONEY_FORMAT_MAX, v, scale));
}

static void text_append_date(Text *t, unsigned date) {
        text_append_name(t, DATE_FORMAT(date));
}

static void text_append_item(Text *t, const ReceiptItem *item) {
        text_append_literal(t, "{\"name\":");
        text_append_string(t, item->name);
        text_append_literal(t, ",\"price\":");
        text_append_decimal(t, item->price, MONEY_SCALE_KOPECKS);
        text_append_literal(t, ",\"quantity\":");
        text_append_decimal(t, item->quantity, MONEY_SCALE_QUANTITY);
        text_append_literal(t, ",\"total\":");
        text_append_decimal(t, item->total, MONEY_SCALE_KOPECKS);
        if (item->discount > 0) {
                text_append_literal(t, ",\"discount\":");
                text_append_decimal(t, item->discount, MONEY_SCALE_KOPECKS);
        }
        text_append_literal(t, ",\"vat\":");
        text_append_name(t, item->vat->name);
        text_append_literal(t, ",\"vat_tag1199\":");
        text_append_int(t, item->vat->tag1199);
        text_append_literal(t, ",\"vat_amount\":");
        text_append_decimal(t, item->vat_amount, MONEY_SCALE_KOPECKS);
        text_append_literal(t, ",\"payment_method\":");
        text_append_name(t, payment_method_to_string(item->payment_method));
        text_append_literal(t, ",\"payment_method_tag1214\":");
        text_append_int(t, item->payment_method);
        text_append_literal(t, ",\"payment_object\":");
        text_append_name(t, payment_object_to_string(item->payment_object));
        text_append_literal(t, ",\"payment_object_tag1212\":");
        text_append_int(t, item->payment_object);
        text_append_literal(t, ",\"measure\":");
        text_append_name(t, measure_to_string(item->measure));
        text_append_literal(t, ",\"measure_tag2108\":");
        text_append_int(t, item->measure);
        if (item->mark_code) {
                text_append_literal(t, ",\"mark_code\":");
                text_append_string(t, item->mark_code);
        }
        text_append_literal(t, "}");
}

int receipt_canonical_with(const Receipt *r, ReceiptCanonicalFlags flags, char **ret) {
        Text t = {};

        assert(r);
        assert(ret);

        /* The two-item sale is about 900 bytes: one allocation for the common case. */
        if (!text_reserve(&t, 640 + 512 * r->n_items))
                return -ENOMEM;

        text_append_literal(&t, "{\"pos_id\":");
        text_append_string(&t, r->pos_id);
        text_append_literal(&t, ",\"type\":");
        text_append_name(&t, receipt_type_to_string(r->type));
        text_append_literal(&t, ",\"type_tag1054\":");
        text_append_int(&t, receipt_type_to_ffd(r->type));
        if (show_taxation(r, flags)) {
                text_append_literal(&t, ",\"taxation\":");
                text_append_name(&t, taxation_to_string(r->taxation));
                text_append_literal(&t, ",\"taxation_tag1055\":");
                text_append_int(&t, r->taxation);
        }

        if (show_cashier(r, flags)) {
                text_append_literal(&t, ",\"cashier\":{\"name\":");
                text_append_string(&t, r->cashier_name);
                if (r->cashier_inn) {
                        text_append_literal(&t, ",\"inn\":");
                        text_append_string(&t, r->cashier_inn);
                }
                text_append_literal(&t, "}");
        }

        if (r->has_correction) {
                text_append_literal(&t, ",\"correction\":{\"type\":");
                text_append_name(&t, correction_type_to_string(r->correction.type));
                text_append_literal(&t, ",\"type_tag1173\":");
                text_append_int(&t, r->correction.type);
                text_append_literal(&t, ",\"date\":");
                text_append_date(&t, r->correction.date);
                if (r->correction.order_number) {
                        text_append_literal(&t, ",\"order_number\":");
                        text_append_string(&t, r->correction.order_number);
                }
                text_append_literal(&t, "}");
        }

        if (r->original) {
                text_append_literal(&t, ",\"original\":");
                text_append_string(&t, r->original);
        }
        if (r->original_date > 0) {
                text_append_literal(&t, ",\"original_date\":");
                text_append_date(&t, r->original_date);
        }

        text_append_literal(&t, ",\"items\":[");
        for (size_t i = 0; i < r->n_items; i++) {
                if (i > 0)
                        text_append_literal(&t, ",");
                text_append_item(&t, r->items + i);
        }

        text_append_literal(&t, "],\"payments\":[");
        for (size_t i = 0; i < r->n_payments; i++) {
                const ReceiptPayment *p = r->payments + i;

                if (i > 0)
                        text_append_literal(&t, ",");
                text_append_literal(&t, "{\"type\":");
                text_append_name(&t, payment_type_to_string(p->type));
                text_append_literal(&t, ",\"amount\":");
                text_append_decimal(&t, p->amount, MONEY_SCALE_KOPECKS);
                text_append_literal(&t, ",\"amount_tag\":");
                text_append_int(&t, p->type);
                text_append_literal(&t, "}");
        }

        text_append_literal(&t, "],\"total\":");
        text_append_decimal(&t, r->total, MONEY_SCALE_KOPECKS);
        if (r->change > 0) {
                text_append_literal(&t, ",\"change\":");
                text_append_decimal(&t, r->change, MONEY_SCALE_KOPECKS);
        }

        text_append_literal(&t, ",\"vat_amounts\":[");
        for (size_t i = 0; i < r->n_vat_sums; i++) {
                const ReceiptVatSum *v = r->vat_sums + i;

                if (i > 0)
                        text_append_literal(&t, ",");
                text_append_literal(&t, "{\"vat\":");
                text_append_name(&t, v->vat->name);
                text_append_literal(&t, ",\"tag1199\":");
                text_append_int(&t, v->vat->tag1199);
                text_append_literal(&t, ",\"base\":");
                text_append_decimal(&t, v->base, MONEY_SCALE_KOPECKS);
                text_append_literal(&t, ",\"amount\":");
                text_append_decimal(&t, v->amount, MONEY_SCALE_KOPECKS);
                text_append_literal(&t, "}");
        }
        text_append_literal(&t, "]");

        if (r->customer_email || r->customer_phone) {
                text_append_literal(&t, ",\"customer\":{");
                if (r->customer_email) {
                        text_append_literal(&t, "\"email\":");
                        text_append_string(&t, r->customer_email);
                }
                if (r->customer_phone) {
                        if (r->customer_email)
                                text_append_literal(&t, ",");
                        text_append_literal(&t, "\"phone\":");
                        text_append_string(&t, r->customer_phone);
                }
                text_append_literal(&t, "}");
        }
        text_append(&t, "}", 2); /* with the NUL */

        if (t.oom) {
                free(t.data);
                return -ENOMEM;
        }
        *ret = t.data;
        return 0;
}

int receipt_canonical(const Receipt *r, char **ret) {
        return receipt_canonical_with(r, 0, ret);
}

/* Per thread, kept for the life of the thread like the tokener. */
static thread_local EVP_MD *cached_sha256 = NULL;
static thread_local EVP_MD_CTX *cached_md_ctx = NULL;

int receipt_fingerprint(const char *canonical, char ret[static 65]) {
        static const char hex[] = "0123456789abcdef";
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned n = 0;

        assert(canonical);

        /* EVP_Digest() with EVP_sha256() allocates a context and, in OpenSSL 3, looks the provider's
         * implementation up again (a locked property query) on every call. */
        if (!cached_sha256) {
                cached_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
                if (!cached_sha256)
                        return -EIO;
        }
        if (!cached_md_ctx) {
                cached_md_ctx = EVP_MD_CTX_new();
                if (!cached_md_ctx)
                        return -ENOMEM;
        }

        if (EVP_DigestInit_ex2(cached_md_ctx, cached_sha256, NULL) != 1 ||
            EVP_DigestUpdate(cached_md_ctx, canonical, strlen(canonical)) != 1 ||
            EVP_DigestFinal_ex(cached_md_ctx, md, &n) != 1 || n != 32)
                return -EIO;

        for (unsigned i = 0; i < n; i++) {
                ret[2 * i] = hex[md[i] >> 4];
                ret[2 * i + 1] = hex[md[i] & 0xf];
        }
        ret[64] = '\0';
        return 0;
}
