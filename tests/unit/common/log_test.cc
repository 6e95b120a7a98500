// JSON quoting for the json log format.
#include "common/log.h"

#include <gtest/gtest.h>

namespace kvtier {
namespace {

TEST(JsonQuote, EscapesWhatJsonNeeds) {
  EXPECT_EQ(JsonQuote("plain"), "\"plain\"");
  EXPECT_EQ(JsonQuote("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(JsonQuote("line\nnext\ttab"), "\"line\\nnext\\ttab\"");
  EXPECT_EQ(JsonQuote(std::string("nul\0x", 5)), "\"nul\\u0000x\"");
  EXPECT_EQ(JsonQuote("caf\xc3\xa9"), "\"caf\xc3\xa9\"");  // valid UTF-8 stays
  EXPECT_EQ(JsonQuote("bad\xff"), "\"bad\\u00ff\"");       // a stray byte is escaped
  EXPECT_EQ(JsonQuote("cut\xc3"), "\"cut\\u00c3\"");       // a truncated sequence too
}

TEST(LogFormat, OnlyTextAndJson) {
  EXPECT_TRUE(SetLogFormat("text").ok());
  absl::Status s = SetLogFormat("xml");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "--log-format: 'xml' is not text or json");
}

}  // namespace
}  // namespace kvtier
