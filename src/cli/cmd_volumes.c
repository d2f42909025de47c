/* cmd_volumes.c: `cryomamba volumes [list | get ID | delete ID]`: the
 * server's uploaded volumes over libcryomamba's blocking REST helpers. A
 * list follows next_cursor through every page unless --limit asks for one
 * page. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const char volumes_help[] =
    "Usage: cryomamba volumes [list [--limit N] [--cursor ID] | get ID | "
    "delete ID]\n"
    "Lists the server's volumes (uploaded MRC files), newest first, shows "
    "one, or\ndeletes one (its file too; jobs keep their results). With "
    "--json, the\nserver's JSON. `list` follows every page unless --limit "
    "N asks for one\npage of N (then the next cursor is printed).\n"
    "Exit: 5 when there is no such volume.\n";


static bool is_uuid(const char* s) {
  return strlen(s) == 36 && strspn(s, "0123456789abcdefABCDEF-") == 36;
}


static void print_row(const cm_volume_t* v) {
  char shape[48], size[32];
  snprintf(shape, sizeof(shape), "%ux%ux%u", v->shape[0], v->shape[1],
           v->shape[2]);
  printf("%-36s  %-14s  %9s  %.12s  %-27s  %s\n", v->volume_id, shape,
         cli_human_bytes(v->size_bytes, size, sizeof(size)), v->sha256,
         v->created_at, v->filename);
}


static int list(cli_ctx_t* ctx,
                cm_client_t* client,
                unsigned limit,
                const char* cursor) {
  json_t* all = json_array();
  size_t total = 0;
  char next[40] = "";
  bool header = false;
  int rc = CLI_EXIT_OK;
  for (;;) {
    cm_reply_t r;
    int err = cm_volume_list_sync(client, cursor, limit, &r);
    if (err != 0) {
      rc = cli_fail(ctx, err, &r, "listing volumes");
      cm_reply_clear(&r);
      break;
    }
    total = r.total;
    for (size_t i = 0; i < r.volume_count; i++) {
      if (ctx->json) {
        json_array_append_new(all, cli_volume_json(&r.volumes[i]));
      } else {
        if (!header) {
          printf("%-36s  %-14s  %9s  %-12s  %-27s  %s\n", "VOLUME", "SHAPE",
                 "SIZE", "SHA256", "CREATED", "FILE");
          header = true;
        }
        print_row(&r.volumes[i]);
      }
    }
    snprintf(next, sizeof(next), "%s", r.next_cursor);
    cm_reply_clear(&r);
    if (limit > 0 || next[0] == '\0') {
      break;
    }
    cursor = next;
  }
  if (rc == CLI_EXIT_OK && ctx->json) {
    json_t* out = json_pack("{s:O, s:I, s:I, s:s?}", "volumes", all, "count",
                            (json_int_t) json_array_size(all), "total",
                            (json_int_t) total, "next_cursor",
                            limit > 0 && next[0] != '\0' ? next : NULL);
    char* text = out != NULL ? json_dumps(out, JSON_COMPACT) : NULL;
    if (text != NULL) {
      printf("%s\n", text);
    }
    free(text);
    json_decref(out);
  } else if (rc == CLI_EXIT_OK && !header) {
    printf("no volumes\n");
  } else if (rc == CLI_EXIT_OK && limit > 0 && next[0] != '\0') {
    printf("more: cryomamba volumes list --limit %u --cursor %s\n", limit,
           next);
  }
  json_decref(all);
  return rc;
}


static int one(cli_ctx_t* ctx,
               cm_client_t* client,
               const char* id,
               bool is_delete) {
  cm_reply_t r;
  int err = is_delete ? cm_volume_delete_sync(client, id, &r)
                      : cm_volume_get_sync(client, id, &r);
  char what[80];
  snprintf(what, sizeof(what), "%s volume %s",
           is_delete ? "deleting" : "getting", id);
  int rc = CLI_EXIT_OK;
  if (err != 0) {
    rc = cli_fail(ctx, err, &r, what);
  } else if (ctx->json) {
    cli_print_body(&r);
  } else if (is_delete) {
    printf("volume %s deleted\n", id);
  } else {
    cli_print_volume(ctx, &r.volume, NULL);
  }
  cm_reply_clear(&r);
  return rc;
}


int cli_cmd_volumes(cli_ctx_t* ctx, int argc, char** argv) {
  static const struct option longs[] = {
      {"help", no_argument, NULL, 'h'},
      {"limit", required_argument, NULL, 'l'},
      {"cursor", required_argument, NULL, 'c'},
      {NULL, 0, NULL, 0}};
  unsigned limit = 0;
  const char* cursor = NULL;
  int c;
  while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
    char* end;
    unsigned long v;
    switch (c) {
    case 'h':
      fputs(volumes_help, stdout);
      return CLI_EXIT_OK;
    case 'l':
      v = strtoul(optarg, &end, 10);
      if (end == optarg || *end != '\0' || v < 1 || v > 1000) {
        return cli_usage_error(ctx, argv[0],
                               "--limit wants 1..1000, not \"%s\"", optarg);
      }
      limit = (unsigned) v;
      break;
    case 'c':
      if (!is_uuid(optarg)) {
        return cli_usage_error(
            ctx, argv[0], "--cursor wants a volume id, not \"%s\"", optarg);
      }
      cursor = optarg;
      break;
    default:
      return cli_usage_error(ctx, argv[0],
                             "unknown option or missing value: \"%s\"",
                             argv[optind - 1]);
    }
  }
  const char* sub = optind < argc ? argv[optind] : "list";
  bool is_list = strcmp(sub, "list") == 0;
  bool is_get = strcmp(sub, "get") == 0;
  bool is_delete = strcmp(sub, "delete") == 0;
  if (!is_list && !is_get && !is_delete) {
    return cli_usage_error(
        ctx, argv[0], "unknown subcommand \"%s\" (list, get, delete)", sub);
  }
  int want = is_list ? 1 : 2; /* arguments after `volumes` */
  int have = argc - optind;
  if (have > want || (!is_list && have < want)) {
    return cli_usage_error(
        ctx, argv[0],
        is_list ? "list takes no argument" : "%s wants one volume ID", sub);
  }
  const char* id = is_list ? NULL : argv[optind + 1];
  if (id != NULL && !is_uuid(id)) {
    return cli_usage_error(ctx, argv[0], "\"%s\" is not a volume id (a UUID)",
                           id);
  }
  cm_client_t* client;
  int rc = cli_client_new(ctx, NULL, &client);
  if (rc != 0) {
    return rc;
  }
  rc = is_list ? list(ctx, client, limit, cursor)
               : one(ctx, client, id, is_delete);
  cm_client_free(client);
  return rc;
}
