// A string kept once per process and shared by every copy: the names in
// stack frames (a compile's 850,000 frames name 7,600 distinct functions,
// files and modules). Copies are a pointer; equality is the pointer's.
// Strings are never freed: there are as many as distinct names.
#pragma once

#include <cstddef>
#include <ostream>
#include <string>
#include <string_view>

namespace memscope {

inline const std::string kInternedEmpty; // constant-initialized (C++20)

class Interned {
public:
    Interned() = default;
    Interned(const std::string& s) : p_(intern(s)) {}
    Interned(std::string_view s) : p_(intern(s)) {}
    Interned(const char* s) : p_(intern(s ? std::string_view(s) : std::string_view())) {}

    const std::string& str() const { return *p_; }
    operator const std::string&() const { return *p_; }
    const char* c_str() const { return p_->c_str(); }
    bool empty() const { return p_->empty(); }
    char operator[](std::size_t i) const { return (*p_)[i]; }
    std::size_t size() const { return p_->size(); }
    std::size_t find(std::string_view s, std::size_t pos = 0) const { return p_->find(s, pos); }
    std::size_t rfind(char c, std::size_t pos = std::string::npos) const { return p_->rfind(c, pos); }
    std::string substr(std::size_t pos, std::size_t n = std::string::npos) const { return p_->substr(pos, n); }
    int compare(std::string_view s) const { return p_->compare(s); }
    bool starts_with(std::string_view s) const { return std::string_view(*p_).substr(0, s.size()) == s; }

    friend bool operator==(const Interned& a, const Interned& b) { return a.p_ == b.p_; }
    friend bool operator==(const Interned& a, std::string_view b) { return *a.p_ == b; }
    friend bool operator==(const Interned& a, const char* b) { return *a.p_ == std::string_view(b); }
    friend bool operator==(const Interned& a, const std::string& b) { return *a.p_ == b; }
    friend bool operator<(const Interned& a, const Interned& b) { return *a.p_ < *b.p_; }
    friend std::string operator+(const std::string& a, const Interned& b) { return a + *b.p_; }
    friend std::string operator+(const Interned& a, const std::string& b) { return *a.p_ + b; }
    friend std::string operator+(const char* a, const Interned& b) { return a + *b.p_; }
    friend std::string operator+(const Interned& a, const char* b) { return *a.p_ + b; }
    friend std::ostream& operator<<(std::ostream& o, const Interned& s) { return o << *s.p_; }

private:
    static const std::string* intern(std::string_view s);
    const std::string* p_ = &kInternedEmpty;
};

} // namespace memscope
