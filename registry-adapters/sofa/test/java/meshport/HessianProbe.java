// Holds meshport's SOFA Registry bodies to Caucho's Java Hessian: reads hex bodies from stdin as Java would (into the
// model classes beside this file) and prints each as one JSON line; `write` prints bodies Java writes, as hex;
// `rewrite` reads each body into the model classes and prints, as hex, what Java writes for what it read.
package meshport;

import com.caucho.hessian.io.Hessian2Input;
import com.caucho.hessian.io.Hessian2Output;
import com.caucho.hessian.io.SerializerFactory;
import java.io.BufferedReader;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.InputStreamReader;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import java.util.logging.Level;
import java.util.logging.Logger;

public final class HessianProbe {
  private static final String MODEL = "com.alipay.sofa.registry.core.model.";

  public static void main(String[] args) throws Exception {
    // The untyped pass below names classes Hessian cannot load on purpose; its warning about each is expected.
    Logger.getLogger("com.caucho").setLevel(Level.OFF);
    if (args.length == 1 && args[0].equals("read")) read();
    else if (args.length == 1 && args[0].equals("write")) write();
    else if (args.length == 1 && args[0].equals("rewrite")) rewrite();
    else throw new IllegalArgumentException("usage: HessianProbe read|write|rewrite");
  }

  /**
   * Each line of stdin is one body in hex; each line of stdout `{"value": ..., "unknownFields": [...], "missingFields":
   * [...]}` or `{"error": "..."}`. Java's reader skips a field its class lacks and leaves one the stream lacks at its
   * default, silently: the second, untyped read (classes unknown, so every object a map of the stream's own field
   * names) is what shows such fields.
   */
  private static void read() throws Exception {
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    StringBuilder out = new StringBuilder();
    for (String line; (line = in.readLine()) != null; ) {
      line = line.trim();
      if (line.isEmpty()) continue;
      byte[] body = hex(line);
      try {
        Object typed = new Hessian2Input(new ByteArrayInputStream(body)).readObject();
        Hessian2Input untypedInput = new Hessian2Input(new ByteArrayInputStream(body));
        untypedInput.setSerializerFactory(new SerializerFactory(new ClassLoader(ClassLoader.getPlatformClassLoader()) {}));
        Object untyped = untypedInput.readObject();
        TreeSet<String> unknown = new TreeSet<>();
        TreeSet<String> missing = new TreeSet<>();
        compareFields(typed, untyped, unknown, missing);
        out.append("{\"value\":").append(json(typed));
        out.append(",\"unknownFields\":").append(json(new ArrayList<>(unknown)));
        out.append(",\"missingFields\":").append(json(new ArrayList<>(missing))).append("}\n");
      } catch (Exception e) {
        out.append("{\"error\":").append(json(e.toString())).append("}\n");
      }
    }
    System.out.print(out);
  }

  /**
   * Java's writer, for meshport's reader: a ReceivedData past 2^53, a refusing RegisterResponse, and one each of the
   * classes meshport writes, whose class definitions show the field order Java writes.
   */
  private static void write() throws Exception {
    Object received = instance("ReceivedData");
    set(received, "dataId", "com.example.Echo:2.0:blue@DEFAULT");
    set(received, "group", "SOFA");
    set(received, "instanceId", "DEFAULT_INSTANCE_ID");
    set(received, "segment", "DefaultDataCenter");
    set(received, "scope", "global");
    set(received, "subscriberRegistIds", new ArrayList<>(Arrays.asList("r1", "r2")));
    Map<String, List<Object>> data = new HashMap<>();
    List<Object> boxes = new ArrayList<>();
    boxes.add(dataBox("198.18.0.8:12200?p=1&v=4.0&_WEIGHT=100"));
    boxes.add(dataBox("198.18.0.9:12200?p=1&v=4.0&_WEIGHT=\u00fc"));
    data.put("GZ00A", boxes);
    data.put("GZ00B", new ArrayList<>());
    set(received, "data", data);
    set(received, "version", 9007199254740993L); // 2^53 + 1: no double holds it
    set(received, "localZone", "GZ00A");
    Map<String, Integer> dataCount = new HashMap<>();
    dataCount.put("GZ00A", 2);
    dataCount.put("GZ00B", 0);
    set(received, "dataCount", dataCount);

    Object response = instance("RegisterResponse");
    set(response, "success", false);
    set(response, "registId", "r1");
    set(response, "version", 9223372036854775807L);
    set(response, "refused", true);
    set(response, "message", "dataId is not allowed");

    Object publisher = instance("PublisherRegister");
    set(publisher, "dataId", "com.example.Echo:2.0:blue@DEFAULT");
    set(publisher, "version", 1L);
    set(publisher, "dataList", new ArrayList<>(Arrays.asList(dataBox("198.18.0.8:12200?p=1"))));
    Object subscriber = instance("SubscriberRegister");
    set(subscriber, "dataId", "com.example.Echo:2.0:blue@DEFAULT");
    set(subscriber, "scope", "global");
    Object result = instance("Result");
    set(result, "success", true);

    for (Object body : new Object[] {received, response, publisher, subscriber, result}) System.out.println(hex(serialize(body)));
  }

  /** Each line of stdin is one body in hex; each line of stdout what Java writes for the object it read, in hex. */
  private static void rewrite() throws Exception {
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    for (String line; (line = in.readLine()) != null; ) {
      line = line.trim();
      if (line.isEmpty()) continue;
      Object value = new Hessian2Input(new ByteArrayInputStream(hex(line))).readObject();
      System.out.println(hex(serialize(value)));
    }
  }

  private static byte[] serialize(Object value) throws Exception {
    ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    Hessian2Output out = new Hessian2Output(bytes);
    out.writeObject(value);
    out.flush();
    return bytes.toByteArray();
  }

  private static Object instance(String simpleName) throws Exception {
    return Class.forName(MODEL + simpleName).getDeclaredConstructor().newInstance();
  }

  private static Object dataBox(String text) throws Exception {
    Object box = instance("DataBox");
    set(box, "data", text);
    return box;
  }

  private static void set(Object target, String name, Object value) throws Exception {
    for (Class<?> c = target.getClass(); c != null; c = c.getSuperclass()) {
      try {
        Field f = c.getDeclaredField(name);
        f.setAccessible(true);
        f.set(target, value);
        return;
      } catch (NoSuchFieldException e) {
        // a superclass may declare it
      }
    }
    throw new NoSuchFieldException(name);
  }

  /** Walks the typed value and the untyped one side by side, naming fields per class as `Class.field`. */
  private static void compareFields(Object typed, Object untyped, TreeSet<String> unknown, TreeSet<String> missing)
      throws Exception {
    if (typed == null || untyped == null) return;
    if (typed.getClass().getName().startsWith(MODEL) && untyped instanceof Map) {
      Map<?, ?> stream = (Map<?, ?>) untyped;
      Map<String, Field> fields = fieldsOf(typed.getClass());
      String simple = typed.getClass().getSimpleName();
      for (Object name : stream.keySet()) if (!fields.containsKey(String.valueOf(name))) unknown.add(simple + "." + name);
      for (Map.Entry<String, Field> f : fields.entrySet()) {
        if (!stream.containsKey(f.getKey())) missing.add(simple + "." + f.getKey());
        else compareFields(f.getValue().get(typed), stream.get(f.getKey()), unknown, missing);
      }
    } else if (typed instanceof List && untyped instanceof List) {
      List<?> a = (List<?>) typed;
      List<?> b = (List<?>) untyped;
      for (int i = 0; i < Math.min(a.size(), b.size()); i++) compareFields(a.get(i), b.get(i), unknown, missing);
    } else if (typed instanceof Map && untyped instanceof Map) {
      for (Map.Entry<?, ?> e : ((Map<?, ?>) typed).entrySet()) {
        compareFields(e.getValue(), ((Map<?, ?>) untyped).get(e.getKey()), unknown, missing);
      }
    }
  }

  /** Instance fields, superclass first, as reflection declares them. */
  private static Map<String, Field> fieldsOf(Class<?> cl) {
    List<Class<?>> chain = new ArrayList<>();
    for (Class<?> c = cl; c != null && c != Object.class; c = c.getSuperclass()) chain.add(0, c);
    Map<String, Field> fields = new LinkedHashMap<>();
    for (Class<?> c : chain) {
      for (Field f : c.getDeclaredFields()) {
        if (Modifier.isStatic(f.getModifiers()) || Modifier.isTransient(f.getModifiers())) continue;
        f.setAccessible(true);
        fields.put(f.getName(), f);
      }
    }
    return fields;
  }

  /**
   * JSON of what Java holds. A model object is `{"$class": name, field: value...}`; a Long is `{"$long": "decimal"}` and
   * an Integer `{"$int": n}`, so the test sees which Java type each number became (and a long past 2^53 exactly).
   */
  private static String json(Object v) throws Exception {
    if (v == null) return "null";
    if (v instanceof String) return quote((String) v);
    if (v instanceof Boolean) return v.toString();
    if (v instanceof Long) return "{\"$long\":\"" + v + "\"}";
    if (v instanceof Integer) return "{\"$int\":" + v + "}";
    if (v instanceof Number) return "{\"$" + v.getClass().getSimpleName() + "\":\"" + v + "\"}";
    if (v instanceof List) {
      StringBuilder sb = new StringBuilder("[");
      for (Object item : (List<?>) v) sb.append(sb.length() > 1 ? "," : "").append(json(item));
      return sb.append(']').toString();
    }
    if (v instanceof Map) {
      StringBuilder sb = new StringBuilder("{");
      for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
        sb.append(sb.length() > 1 ? "," : "").append(quote(String.valueOf(e.getKey()))).append(':').append(json(e.getValue()));
      }
      return sb.append('}').toString();
    }
    if (v.getClass().getName().startsWith(MODEL)) {
      StringBuilder sb = new StringBuilder("{\"$class\":").append(quote(v.getClass().getName()));
      for (Map.Entry<String, Field> f : fieldsOf(v.getClass()).entrySet()) {
        sb.append(',').append(quote(f.getKey())).append(':').append(json(f.getValue().get(v)));
      }
      return sb.append('}').toString();
    }
    return "{\"$other\":" + quote(v.getClass().getName()) + "}";
  }

  private static String quote(String s) {
    StringBuilder sb = new StringBuilder("\"");
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c == '"' || c == '\\') sb.append('\\').append(c);
      else if (c < 0x20 || c > 0x7e) sb.append(String.format("\\u%04x", (int) c));
      else sb.append(c);
    }
    return sb.append('"').toString();
  }

  private static byte[] hex(String s) {
    byte[] out = new byte[s.length() / 2];
    for (int i = 0; i < out.length; i++) out[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
    return out;
  }

  private static String hex(byte[] bytes) {
    StringBuilder sb = new StringBuilder();
    for (byte b : bytes) sb.append(String.format("%02x", b & 0xff));
    return sb.toString();
  }
}
