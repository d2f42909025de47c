/* upload_record.c: resume records (see upload_record.h): JSON through
 * jansson, the file name from a sha256 of the key, atomic writes. Runs on
 * the libuv thread pool (upload_work.c) and in unit tests; blocking I/O,
 * no shared state. */
#include "client/upload_record.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RECORD_VERSION 1
#define RECORD_MAX_BYTES (64 * 1024)


int upload_record_to_json(const upload_record_t* rec, char** out) {
  json_t* parts = json_array();
  for (unsigned i = 0; parts != NULL && i < rec->part_count; i++) {
    const upload_part_t* p = &rec->parts[i];
    json_array_append_new(parts, json_pack("{s:s, s:I, s:I}", "url", p->url,
                                           "start", (json_int_t) p->start,
                                           "length", (json_int_t) p->length));
  }
  json_t* root = json_pack(
      "{s:i, s:s, s:s, s:s*, s:I, s:I, s:s?, s:s?, s:o?}", "version",
      RECORD_VERSION, "path", rec->path, "server", rec->server, "holder",
      rec->holder[0] != '\0' ? rec->holder : NULL, "size",
      (json_int_t) rec->size, "mtime_ns", (json_int_t) rec->mtime_ns, "sha256",
      rec->sha256[0] != '\0' ? rec->sha256 : NULL, "upload_url",
      rec->upload_url[0] != '\0' ? rec->upload_url : NULL, "parts", parts);
  *out = root != NULL ? json_dumps(root, JSON_COMPACT) : NULL;
  json_decref(root);
  return *out != NULL ? 0 : -ENOMEM;
}


/* Copies string member `key` of `obj` into dst; false when it is missing
 * (unless optional), not a string, empty or too long. */
static bool get_str(const json_t* obj,
                    const char* key,
                    char* dst,
                    size_t cap,
                    bool optional) {
  const json_t* v = json_object_get(obj, key);
  if (v == NULL || json_is_null(v)) {
    dst[0] = '\0';
    return optional;
  }
  size_t n = json_string_length(v);
  if (!json_is_string(v) || n == 0 || n >= cap ||
      strlen(json_string_value(v)) != n) {
    return false;
  }
  memcpy(dst, json_string_value(v), n + 1);
  return true;
}


static bool get_u64(const json_t* obj, const char* key, uint64_t* out) {
  const json_t* v = json_object_get(obj, key);
  if (!json_is_integer(v) || json_integer_value(v) < 0) {
    return false;
  }
  *out = (uint64_t) json_integer_value(v);
  return true;
}


static bool is_hex64(const char* s) {
  return strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}


static bool parse_parts(const json_t* arr, upload_record_t* rec) {
  if (arr == NULL || json_is_null(arr)) {
    rec->part_count = 0;
    return true;
  }
  size_t n = json_array_size(arr);
  if (!json_is_array(arr) || n == 1 || n > UPLOAD_RECORD_MAX_PARTS) {
    return false;
  }
  uint64_t next = 0;
  for (size_t i = 0; i < n; i++) {
    const json_t* p = json_array_get(arr, i);
    upload_part_t* part = &rec->parts[i];
    if (!get_str(p, "url", part->url, sizeof(part->url), false) ||
        !get_u64(p, "start", &part->start) ||
        !get_u64(p, "length", &part->length) || part->start != next ||
        part->length > rec->size - next) {
      return false;
    }
    next += part->length;
  }
  rec->part_count = (unsigned) n;
  return next == rec->size || n == 0;
}


int upload_record_from_json(const char* text,
                            size_t len,
                            upload_record_t* out) {
  memset(out, 0, sizeof(*out));
  json_error_t jerr;
  json_t* root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  uint64_t mtime = 0;
  const json_t* version = json_object_get(root, "version");
  bool ok = json_is_object(root) && json_is_integer(version) &&
            json_integer_value(version) == RECORD_VERSION &&
            get_str(root, "path", out->path, sizeof(out->path), false) &&
            out->path[0] == '/' &&
            get_str(root, "server", out->server, sizeof(out->server), false) &&
            get_str(root, "holder", out->holder, sizeof(out->holder), true) &&
            get_u64(root, "size", &out->size) &&
            get_u64(root, "mtime_ns", &mtime) &&
            get_str(root, "sha256", out->sha256, sizeof(out->sha256), true) &&
            (out->sha256[0] == '\0' || is_hex64(out->sha256)) &&
            get_str(root, "upload_url", out->upload_url,
                    sizeof(out->upload_url), true) &&
            parse_parts(json_object_get(root, "parts"), out);
  out->mtime_ns = (int64_t) mtime;
  json_decref(root);
  if (!ok) {
    memset(out, 0, sizeof(*out));
    return -EINVAL;
  }
  return 0;
}


bool upload_record_same_key(const upload_record_t* a,
                            const upload_record_t* b) {
  return a->size == b->size && a->mtime_ns == b->mtime_ns &&
         strcmp(a->path, b->path) == 0 && strcmp(a->server, b->server) == 0;
}


int upload_record_file(const char* dir,
                       const char* path,
                       const char* server,
                       char* out,
                       size_t cap) {
  /* One record per file and server; the name hides the path (no escaping
   * of slashes, no length limit of a file name). */
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  uint8_t d[EVP_MAX_MD_SIZE];
  unsigned dlen = 0;
  if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
      EVP_DigestUpdate(md, path, strlen(path)) != 1 ||
      EVP_DigestUpdate(md, "\n", 1) != 1 ||
      EVP_DigestUpdate(md, server, strlen(server)) != 1 ||
      EVP_DigestFinal_ex(md, d, &dlen) != 1) {
    EVP_MD_CTX_free(md);
    return -ENOMEM;
  }
  EVP_MD_CTX_free(md);
  char hex[2 * EVP_MAX_MD_SIZE + 1];
  for (unsigned i = 0; i < dlen; i++) {
    snprintf(hex + 2 * i, 3, "%02x", d[i]);
  }
  int n = snprintf(out, cap, "%s/%s.json", dir, hex);
  return n > 0 && (size_t) n < cap ? 0 : -ENAMETOOLONG;
}


int upload_record_default_dir(const char* xdg,
                              const char* home,
                              char* out,
                              size_t cap) {
  int n;
  /* XDG: a relative XDG_STATE_HOME is invalid and to be ignored. */
  if (xdg != NULL && xdg[0] == '/') {
    n = snprintf(out, cap, "%s/cryomamba/uploads", xdg);
  } else if (home != NULL && home[0] != '\0') {
    n = snprintf(out, cap, "%s/.local/state/cryomamba/uploads", home);
  } else {
    return -ENOENT;
  }
  return n > 0 && (size_t) n < cap ? 0 : -ENAMETOOLONG;
}


int upload_record_load(const char* file, upload_record_t* out) {
  int fd = open(file, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return -errno;
  }
  char* buf = malloc(RECORD_MAX_BYTES);
  if (buf == NULL) {
    close(fd);
    return -ENOMEM;
  }
  size_t len = 0;
  int err = 0;
  while (len < RECORD_MAX_BYTES) {
    ssize_t n = read(fd, buf + len, RECORD_MAX_BYTES - len);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      err = -errno;
      break;
    }
    if (n == 0) {
      break;
    }
    len += (size_t) n;
  }
  close(fd);
  if (err == 0) {
    err = len < RECORD_MAX_BYTES ? upload_record_from_json(buf, len, out)
                                 : -EINVAL;
  }
  free(buf);
  return err;
}


/* mkdir -p with mode 0700 for what it creates. */
static int make_dirs(const char* dir) {
  char path[4096];
  size_t n = strlen(dir);
  if (n == 0 || n >= sizeof(path)) {
    return -ENAMETOOLONG;
  }
  memcpy(path, dir, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (path[i] != '/' && path[i] != '\0') {
      continue;
    }
    char c = path[i];
    path[i] = '\0';
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
      return -errno;
    }
    path[i] = c;
  }
  struct stat st;
  if (stat(dir, &st) != 0) {
    return -errno;
  }
  return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}


static int write_all(int fd, const char* data, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, data, len);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return -errno;
    }
    data += n;
    len -= (size_t) n;
  }
  return 0;
}


int upload_record_save(const char* dir,
                       const char* file,
                       const upload_record_t* rec) {
  int err = make_dirs(dir);
  if (err != 0) {
    return err;
  }
  char* text = NULL;
  if ((err = upload_record_to_json(rec, &text)) != 0) {
    return err;
  }
  char tmp[4200];
  if (snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", file, (long) getpid()) >=
      (int) sizeof(tmp)) {
    free(text);
    return -ENAMETOOLONG;
  }
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    free(text);
    return -errno;
  }
  err = write_all(fd, text, strlen(text));
  if (err == 0 && fsync(fd) != 0) {
    err = -errno;
  }
  if (close(fd) != 0 && err == 0) {
    err = -errno;
  }
  free(text);
  if (err == 0 && rename(tmp, file) != 0) {
    err = -errno;
  }
  if (err != 0) {
    unlink(tmp);
  }
  return err;
}


int upload_record_remove(const char* file) {
  if (unlink(file) != 0 && errno != ENOENT) {
    return -errno;
  }
  return 0;
}
