// CurlPoster: the HttpPoster of the offline-notification webhook
// (service/webhook_notifier.h) over libcurl (Debian's libcurl4-openssl: http
// and https with the system's CA certificates).
//
// Threading: thread-safe; each Post() uses an easy handle of its own and
// blocks for at most its timeout. curl_global_init runs once, at the first
// construction.
#ifndef PARLEY_SERVICE_CURL_POSTER_H_
#define PARLEY_SERVICE_CURL_POSTER_H_

#include <string>
#include <vector>

#include "service/webhook_notifier.h"

namespace parley::service {

class CurlPoster final : public HttpPoster {
 public:
  CurlPoster();
  PostResult Post(const std::string& url,
                  const std::vector<std::string>& headers,
                  const std::string& body, absl::Duration timeout) override;
};

}  // namespace parley::service

#endif  // PARLEY_SERVICE_CURL_POSTER_H_
