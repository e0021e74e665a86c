// SOFA Registry's SubscriberRegister: field names and Java types of the public model class, for meshport's interop test.
package com.alipay.sofa.registry.core.model;

public class SubscriberRegister extends BaseRegister {
  private static final long serialVersionUID = 1L;
  String scope;
  String acceptEncoding;
  boolean acceptMulti;
}
