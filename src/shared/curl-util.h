/* SPDX-License-Identifier: MIT */
#pragma once

/* Cleanup for libcurl handles and the translation of CURLcode to negative errnos. */

#include <curl/curl.h>

#include "macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(CURL *, curl_easy_cleanup);
DEFINE_TRIVIAL_CLEANUP_FUNC(CURLM *, curl_multi_cleanup);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct curl_slist *, curl_slist_free_all);

/* CURLE_OPERATION_TIMEDOUT -> -ETIMEDOUT, CURLE_COULDNT_CONNECT -> -ECONNREFUSED, ... */
int curl_code_to_errno(CURLcode c);
